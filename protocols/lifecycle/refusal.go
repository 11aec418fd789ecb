package lifecycle

import (
	"context"
	"maps"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// Bounds of the client-chosen values a refusal records.
const (
	// MaxAuditName bounds a user name, target, login or database a
	// refusal records, after escaping.
	MaxAuditName = 64
	// maxAuditReason bounds a refusal's reason, which may quote a name.
	maxAuditReason = 512
)

// Refusal is a connection refused before it became a session, for the
// audit log.
type Refusal struct {
	// User is who asked, as far as known; "unknown" when empty.
	User   string
	Target string
	// Outcome is broker.OutcomeDenied, or OutcomeError when the broker
	// or the target failed.
	Outcome string
	Reason  string
	// Details adds protocol specifics (login, database, sqlstate); never
	// a credential.
	Details map[string]any
	// Anonymous marks a client that never proved who it is (no valid
	// connection token, key or certificate): User is only what it
	// claimed. Such refusals, which anyone can provoke at will, go
	// through Options.Rejections.
	Anonymous bool
}

// Refused audits a refusal (session.refused) and logs it. Every string
// the client may have chosen (the user name of an anonymous refusal, the
// target, the reason, string details) is recorded escaped and bounded
// (AuditValue). An anonymous refusal goes through Options.Rejections when
// set, keyed by the client's address (the client_addr detail).
func (c *Core) Refused(ctx context.Context, r Refusal) {
	if r.User == "" {
		r.User = "unknown"
	}
	// The reason may quote the names the client chose: they are
	// recorded there as bounded as anywhere else.
	reason := r.Reason
	target := AuditValue(r.Target, MaxAuditName)
	for _, raw := range []string{r.User, r.Target} {
		if bounded := AuditValue(raw, MaxAuditName); bounded != raw && raw != "" {
			reason = strings.ReplaceAll(reason, strconv.Quote(raw), `"`+bounded+`"`)
			reason = strings.ReplaceAll(reason, raw, bounded)
		}
	}
	reason = escape(reason, maxAuditReason, false)
	if r.Anonymous {
		r.User = AuditValue(r.User, MaxAuditName)
	}
	if r.Outcome == "" {
		r.Outcome = broker.OutcomeDenied
	}
	d := map[string]any{"protocol": c.cfg.Protocol}
	for k, v := range r.Details {
		if s, ok := v.(string); ok && k != "client_addr" {
			v = AuditValue(s, MaxAuditName)
		}
		d[k] = v
	}
	if r.Anonymous {
		d["anonymous"] = true
	}
	e := audit.Entry{Actor: r.User, Action: ActionRefused, Target: target, Outcome: r.Outcome, Reason: reason, Details: d}
	if !r.Anonymous || c.cfg.Rejections == nil {
		c.log.Info("connection refused", "user", r.User, "target", target, "reason", reason, "client", d["client_addr"])
		c.audit(ctx, e)
		return
	}
	c.log.Debug("connection refused", "user", r.User, "target", target, "reason", reason, "client", d["client_addr"])
	addr, _ := d["client_addr"].(string)
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	if err := c.cfg.Rejections.Record(actx, audit.SourceAddr(addr), e); err != nil {
		c.log.Error("audit append failed", "action", e.Action, "err", err)
	}
}

// AuditValue is s as an audit record may hold a value a client chose:
// printable text is kept, a backslash, quote and every other byte are
// escaped as Go string literals escape them (\n, \x1b, \u200b), and the
// result is cut to at most max bytes, ending in "…" when cut. Ordinary
// names pass unchanged.
func AuditValue(s string, max int) string { return escape(s, max, true) }

// escape escapes s as AuditValue does; backslashes and quotes only when
// strict.
func escape(s string, max int, strict bool) string {
	special := func(r rune) bool { return strict && (r == '\\' || r == '"') }
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || special(r) || !strconv.IsPrint(r) {
			clean = false
			break
		}
	}
	if clean && len(s) <= max {
		return s
	}
	const ellipsis = "…"
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		var piece string
		switch {
		case r == utf8.RuneError && n == 1:
			piece = `\x` + strconv.FormatUint(uint64(s[i])>>4, 16) + strconv.FormatUint(uint64(s[i])&0xf, 16)
		case special(r) || !strconv.IsPrint(r):
			q := strconv.QuoteRune(r)
			piece = q[1 : len(q)-1]
			if r == '"' {
				piece = `\"`
			}
		default:
			piece = s[i : i+n]
		}
		if b.Len()+len(piece) > max-len(ellipsis) && (i+n < len(s) || b.Len()+len(piece) > max) {
			b.WriteString(ellipsis)
			return b.String()
		}
		b.WriteString(piece)
		i += n
	}
	return b.String()
}

// refusedDetails are the detail keys of a tracked session's refusal.
func (s *Session) refusedDetails(details map[string]any) map[string]any {
	d := map[string]any{"client_addr": s.ClientAddr, "grant_id": s.Grant.ID, "session_id": s.ID}
	maps.Copy(d, details)
	return d
}

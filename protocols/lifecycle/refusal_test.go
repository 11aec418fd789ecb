package lifecycle_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/protocols/lifecycle"
)

func TestAuditValue(t *testing.T) {
	long := strings.Repeat("a", 10000)
	for _, tc := range []struct{ in, want string }{
		{"alice", "alice"},
		{"", ""},
		{"o'brien", "o'brien"},
		{"é-ü", "é-ü"},
		{"\x1b[31mroot\x1b[0m", `\x1b[31mroot\x1b[0m`},
		{"a\nb\tc", `a\nb\tc`},
		{"bad\xffutf8", `bad\xffutf8`},
		{`back\slash "q"`, `back\\slash \"q\"`},
		{"zero\u200bwidth", `zero\u200bwidth`},
		{long, strings.Repeat("a", lifecycle.MaxAuditName-len("…")) + "…"},
		{strings.Repeat("\x00", 100), strings.Repeat(`\x00`, (lifecycle.MaxAuditName-len("…"))/4) + "…"},
		{strings.Repeat("b", lifecycle.MaxAuditName), strings.Repeat("b", lifecycle.MaxAuditName)},
	} {
		got := lifecycle.AuditValue(tc.in, lifecycle.MaxAuditName)
		if got != tc.want {
			t.Errorf("AuditValue(%.40q) = %q, want %q", tc.in, got, tc.want)
		}
		if len(got) > lifecycle.MaxAuditName || !utf8.ValidString(got) {
			t.Errorf("AuditValue(%.40q) = %q: %d bytes or invalid UTF-8", tc.in, got, len(got))
		}
	}
}

// rejections is a stand-in for the audit throttle: it keeps what it is
// given.
type rejections struct {
	mu      sync.Mutex
	sources []string
	entries []audit.Entry
}

func (r *rejections) Record(_ context.Context, source string, e audit.Entry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sources, r.entries = append(r.sources, source), append(r.entries, e)
	return nil
}

// TestAnonymousRefusalGoesThroughRejections: a refusal of a client that
// never proved who it is goes to the throttle, keyed by its address, with
// its claimed name bounded and escaped; an identified user's refusal is a
// record of its own.
func TestAnonymousRefusalGoesThroughRejections(t *testing.T) {
	rej := &rejections{}
	c := newCore(t, 0, func(o *lifecycle.Options) { o.Rejections = rej })
	name := "\x1b]0;pwned\x07" + strings.Repeat("x", 10000)
	c.Refused(context.Background(), lifecycle.Refusal{User: name, Target: name, Reason: "bad token for " + name, Anonymous: true,
		Details: map[string]any{"client_addr": "192.0.2.7:5555", "database": name}})
	c.Refused(context.Background(), lifecycle.Refusal{User: "alice", Target: "db1", Reason: "grant expired",
		Details: map[string]any{"client_addr": "192.0.2.7:5556"}})

	if len(rej.entries) != 1 || rej.sources[0] != "192.0.2.7" {
		t.Fatalf("throttled refusals = %+v from %v, want the anonymous one from 192.0.2.7", rej.entries, rej.sources)
	}
	e := rej.entries[0]
	d := e.Details.(map[string]any)
	for what, v := range map[string]string{"actor": e.Actor, "target": e.Target, "database": d["database"].(string)} {
		if len(v) > lifecycle.MaxAuditName || strings.ContainsAny(v, "\x1b\x07") || !strings.HasPrefix(v, `\x1b]0;pwned\a`) {
			t.Errorf("%s recorded as %q", what, v)
		}
	}
	if len(e.Reason) > 512 || strings.ContainsAny(e.Reason, "\x1b\x07") {
		t.Errorf("reason recorded as %d bytes: %.80q", len(e.Reason), e.Reason)
	}
	if own := c.audit.Find(lifecycle.ActionRefused); len(own) != 1 || own[0].Actor != "alice" {
		t.Fatalf("records of their own = %+v, want alice's", own)
	}
}

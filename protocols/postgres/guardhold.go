package pgproxy

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/holds"
)

// explainTimeout bounds the EXPLAIN behind a hold's row estimate.
const explainTimeout = 10 * time.Second

// setupGuardrails installs the role's guardrails on a logged-in session:
// the client is read through the guardrail, and client writes are
// serialized so a hold's notice never splits a server message. A role
// without guardrails keeps the plain relay.
func (s *session) setupGuardrails(t *config.Target, role *config.Role, db, user, password string, params map[string]string) {
	if role == nil || role.Guardrails == nil {
		return
	}
	cls, note := s.p.guardClassifier(s.Context(), t, role.Guardrails, db, user, password)
	g := &guardrail{s: s, cfg: role.Guardrails, cls: cls, catalogNote: note,
		stmts: map[string]*prepared{}, portals: map[string]*bound{}, cache: map[string]classified{},
		sqlPrepared: map[string][]string{}}
	g.estimate = func(ctx context.Context, stmts []string, st *prepared, b *bound) (int64, string) {
		return explainRows(ctx, t, db, user, password, params, stmts, st, b)
	}
	g.in = &guardConn{Conn: s.client, g: g, br: bufio.NewReaderSize(s.client, initialBuf), max: s.p.opts.MaxMessageSize}
	g.out = &boundaryWriter{Conn: s.client}
	s.guard = g
}

// relaySource and relaySink are the client connection as the two copiers
// use it.
func (s *session) relaySource() net.Conn {
	if s.guard != nil {
		return s.guard.in
	}
	return s.client
}

func (s *session) relaySink() net.Conn {
	if s.guard != nil {
		return s.guard.out
	}
	return s.client
}

// hold waits for an approver's decision on a held statement. It returns
// true when the statement may run, once; otherwise the client-visible
// reason.
func (g *guardrail) hold(ctx context.Context, v verdict, text string, b *bound) (string, bool) {
	s := g.s
	var stmts []string
	var st *prepared
	if b != nil {
		st, stmts = b.st, []string{text}
	} else {
		stmts = v.stmts
	}
	est, note := int64(-1), "statement cannot be explained"
	if len(stmts) > 0 {
		est, note = g.estimate(ctx, stmts, st, b)
	}
	req := holds.Request{Session: s.ID, GrantID: s.Grant.ID, User: s.Grant.User, Target: s.Grant.Target,
		Role: s.Grant.Role, Database: s.Database, Text: text, Digest: holdDigest(text, b),
		Rules: v.rules, Estimate: est, EstimateNote: note, Timeout: g.cfg.HoldTimeoutOrDefault()}
	if b != nil {
		req.Params = b.nparams
	}
	h := s.p.opts.Holds
	if h == nil {
		g.note(v, "hold refused", text)
		return "custos: statement needs approval (guardrail " + strings.Join(v.rules, ", ") + ") and the broker has no approval channel", false
	}
	g.note(v, "held", text)
	s.Audit("postgres.guardrail", "held", "statement held for approval: "+strings.Join(v.rules, ", "),
		map[string]any{"rules": v.rules, "estimate": est, "digest": req.Digest})
	g.notice(fmt.Sprintf("custos: statement held for approval (guardrail %s); waiting up to %s",
		strings.Join(v.rules, ", "), req.Timeout))
	hctx, cancel := context.WithCancel(ctx)
	g.holding.Store(&cancel)
	d, err := h.Hold(hctx, req)
	g.holding.Store(nil)
	cancel()
	if err != nil {
		g.note(v, "hold failed", text)
		return "custos: statement held and the approval failed", false
	}
	outcome, reason := "approved", "approved by "+d.By
	switch {
	case d.Approved:
	case d.TimedOut:
		outcome, reason = "expired", "no decision within "+req.Timeout.String()
	case d.By == "":
		outcome, reason = "abandoned", d.Reason
	default:
		outcome, reason = "denied", "denied by "+d.By
	}
	e := v
	e.rules = append([]string{"hold " + d.ID, reason}, v.rules...)
	g.note(e, outcome, text)
	s.Audit("postgres.guardrail", outcome, reason, map[string]any{"hold": d.ID, "decided_by": d.By, "digest": req.Digest})
	if d.Approved {
		return "", true
	}
	return "custos: held statement not approved (" + reason + ")", false
}

// holdDigest binds an approval to the statement text and its parameters:
// SHA-256 over both, length-prefixed.
func holdDigest(text string, b *bound) string {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(text)))
	h.Write(n[:])
	h.Write([]byte(text))
	if b != nil {
		binary.BigEndian.PutUint64(n[:], uint64(len(b.raw)))
		h.Write(n[:])
		h.Write(b.raw)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// notice tells the client its statement waits, if the server→client
// stream is between messages (it always is when the client sent the
// statement and waits for its answer).
func (g *guardrail) notice(msg string) {
	buf, err := (&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000", Message: msg}).Encode(nil)
	if err != nil {
		return
	}
	g.out.writeAtBoundary(buf)
}

// boundaryWriter serializes writes to the client and tracks message
// boundaries in what the server→client copier writes. It also removes the
// ParseComplete and BindComplete the target sends for the broker's own
// replacement of a denied extended-protocol statement: the client did not
// send those messages and strict clients (pgx pipelines) refuse answers
// they did not ask for.
type boundaryWriter struct {
	net.Conn
	mu sync.Mutex
	// left is the number of bytes of the current message still to come;
	// hdr holds a partial header.
	left int
	hdr  []byte
	// completions has one entry per Parse or Bind sent to the target in
	// the current batch, in order: true for the broker's own, whose
	// ParseComplete or BindComplete is dropped. drops counts the trues.
	// Both are cleared at ReadyForQuery (after an error the target answers
	// nothing else until Sync).
	completions []completion
	drops       int
	// pend is a partial header held back while completions are expected.
	pend []byte
}

// completion is an expected ParseComplete or BindComplete: own ones are
// dropped; done, if set, runs when it passes (the Parse took effect).
type completion struct {
	own  bool
	done func()
}

// expect notes that a Parse or Bind goes to the target; own marks the
// broker's replacements; done runs when the target completes it.
func (w *boundaryWriter) expect(own bool, done func()) {
	w.mu.Lock()
	w.completions = append(w.completions, completion{own, done})
	if own {
		w.drops++
	}
	w.mu.Unlock()
}

func (w *boundaryWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.completions) == 0 && len(w.pend) == 0 {
		n, err := w.Conn.Write(p)
		w.track(p[:n])
		return n, err
	}
	// Walk whole messages: drop the broker's completions, note the
	// target's, clear at ReadyForQuery.
	out := make([]byte, 0, len(p))
	q := p
	if len(w.pend) > 0 {
		q = append(w.pend, p...)
		w.pend = nil
	}
	for len(q) > 0 {
		if w.left == 0 && len(w.hdr) == 0 && len(q) < headerLen {
			w.pend = append([]byte(nil), q...)
			break
		}
		if w.left > 0 || len(w.hdr) > 0 {
			k := w.consume(q)
			out = append(out, q[:k]...)
			q = q[k:]
			continue
		}
		typ, l := q[0], int(binary.BigEndian.Uint32(q[1:]))
		switch {
		case (typ == '1' || typ == '2') && l == 4 && len(w.completions) > 0:
			c := w.completions[0]
			w.completions = w.completions[1:]
			if c.done != nil {
				c.done()
			}
			if c.own {
				w.drops--
				q = q[headerLen:]
				continue
			}
		case typ == 'Z':
			w.completions, w.drops = w.completions[:0], 0
		}
		k := w.consume(q)
		out = append(out, q[:k]...)
		q = q[k:]
	}
	if len(w.completions) == 0 {
		w.completions = nil
	}
	if _, err := w.Conn.Write(out); err != nil {
		// The copier counts what it handed over; a partial write is a
		// failed session either way.
		return 0, err
	}
	return len(p), nil
}

// consume tracks one message (or the part of it in p) and returns its
// length in p.
func (w *boundaryWriter) consume(p []byte) int {
	if w.left > 0 {
		k := min(w.left, len(p))
		w.left -= k
		return k
	}
	k := min(headerLen-len(w.hdr), len(p))
	w.hdr = append(w.hdr, p[:k]...)
	if len(w.hdr) == headerLen {
		w.left = int(binary.BigEndian.Uint32(w.hdr[1:])) - 4
		w.hdr = w.hdr[:0]
		b := min(w.left, len(p)-k)
		w.left -= b
		k += b
	}
	return k
}

func (w *boundaryWriter) track(p []byte) {
	for len(p) > 0 {
		p = p[w.consume(p):]
	}
}

// writeAtBoundary writes a whole message of the broker's own if the
// stream is between messages; otherwise it drops it.
func (w *boundaryWriter) writeAtBoundary(msg []byte) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.left != 0 || len(w.hdr) != 0 || len(w.pend) != 0 {
		return false
	}
	w.Conn.SetWriteDeadline(time.Now().Add(closeGrace))
	_, err := w.Conn.Write(msg)
	w.Conn.SetWriteDeadline(time.Time{})
	return err == nil
}

// explainRows asks the target for the planner's row estimate of stmts,
// on a connection of its own logged in with the session's credentials, in
// a read-only transaction that is rolled back: EXPLAIN without ANALYZE
// plans and never executes, and each statement goes through the extended
// protocol, which refuses more than one statement per message. It returns
// -1 and a note when there is no estimate.
func explainRows(ctx context.Context, t *config.Target, db, user, password string, params map[string]string,
	stmts []string, st *prepared, b *bound) (int64, string) {
	ctx, cancel := context.WithTimeout(ctx, explainTimeout)
	defer cancel()
	cfg, err := upstreamConfig(t, db, user, password, params)
	if err != nil {
		return -1, "estimate unavailable: " + err.Error()
	}
	rp := map[string]string{}
	for k, v := range cfg.RuntimeParams {
		rp[k] = v
	}
	rp["application_name"] = "custos-guardrail-estimate"
	cfg.RuntimeParams = rp
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return -1, "estimate unavailable: cannot connect"
	}
	defer pc.Close(context.WithoutCancel(ctx))
	if err := pc.Exec(ctx, "BEGIN READ ONLY; SET LOCAL statement_timeout = '5s'").Close(); err != nil {
		return -1, "estimate unavailable: " + upstreamErrText(err)
	}
	defer func() { pc.Exec(context.WithoutCancel(ctx), "ROLLBACK").Close() }()
	var total int64
	for _, q := range stmts {
		var vals [][]byte
		var oids []uint32
		var fmts []int16
		if st != nil {
			oids = st.paramOIDs
		}
		if b != nil {
			vals, fmts = b.values, b.formats
			for len(oids) < len(vals) {
				oids = append(oids, 0)
			}
		}
		r := pc.ExecParams(ctx, "EXPLAIN (FORMAT JSON) "+q, vals, oids, fmts, nil).Read()
		if r.Err != nil {
			return -1, "estimate unavailable: " + upstreamErrText(r.Err)
		}
		if len(r.Rows) != 1 || len(r.Rows[0]) != 1 {
			return -1, "estimate unavailable: unexpected EXPLAIN output"
		}
		n, err := planRows(r.Rows[0][0])
		if err != nil {
			return -1, "estimate unavailable: " + err.Error()
		}
		total += n
	}
	return total, ""
}

// upstreamErrText is an upstream error without detail fields (they may quote
// data).
func upstreamErrText(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code + " " + pe.Message
	}
	return "upstream error: " + err.Error()
}

// planNode is the part of EXPLAIN (FORMAT JSON) the estimate reads.
type planNode struct {
	NodeType string     `json:"Node Type"`
	Rows     float64    `json:"Plan Rows"`
	Plans    []planNode `json:"Plans"`
}

// planRows reads the estimate: rows of the top node, or for a
// data-modifying statement (ModifyTable, whose own estimate is 0 without
// RETURNING) the rows of the scan feeding it.
func planRows(b []byte) (int64, error) {
	var out []struct {
		Plan planNode `json:"Plan"`
	}
	if err := json.Unmarshal(b, &out); err != nil || len(out) == 0 {
		return -1, fmt.Errorf("EXPLAIN output not understood")
	}
	p := out[0].Plan
	if n, ok := modified(p); ok {
		return n, nil
	}
	return int64(p.Rows), nil
}

// modified sums the rows feeding every ModifyTable in the plan (a
// data-modifying CTE sits below a SELECT).
func modified(p planNode) (int64, bool) {
	var n int64
	found := false
	if p.NodeType == "ModifyTable" && len(p.Plans) > 0 {
		n, found = int64(p.Plans[0].Rows), true
	}
	for _, c := range p.Plans {
		if m, ok := modified(c); ok {
			n, found = n+m, true
		}
	}
	return n, found
}

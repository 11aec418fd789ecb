package pgproxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/holds"
	"github.com/custos-pam/custos/protocols/postgres/guard"
	"github.com/custos-pam/custos/recorder/event"
)

// holder decides held statements (broker/holds.Store).
type holder interface {
	Hold(ctx context.Context, req holds.Request) (holds.Decision, error)
}

// alerter tells the security channel about a statement a guardrail
// alerts on, as it happens. Implementations must not block.
type alerter interface {
	GuardrailAlert(a GuardrailAlert)
}

// GuardrailAlert is a statement that touched a rule whose action is alert.
type GuardrailAlert struct {
	Session, User, Target, Role, Database string
	Rules                                 []string
	// Text is the statement text.
	Text string
}

// codeGuardrail is the SQLSTATE of a statement a guardrail stopped
// (insufficient_privilege).
const codeGuardrail = "42501"

// guardrail is a session's statement guardrails. It sits in the
// client→server path only for roles with guardrails: it reads the client's
// messages one by one, classifies statements, and hands the relay either
// the message, or (denied) a statement that makes the target answer with
// the broker's error in protocol order, or (held) the message after an
// approval.
type guardrail struct {
	s   *session
	cfg *config.Guardrails
	cls *guard.Classifier
	// catalogNote says why the tables with classified columns are not
	// known (every table is then protected); "" when they are.
	catalogNote string
	// estimate runs EXPLAIN under the session's credentials.
	estimate func(ctx context.Context, stmts []string, st *prepared, params *bound) (int64, string)

	// Extended protocol: statements and portals that need a decision
	// when executed.
	stmts   map[string]*prepared
	portals map[string]*bound
	// sqlPrepared are the SQL-level prepared statements (PREPARE name AS
	// ...) whose execution is held, with the rules they touch. Entries
	// are never removed: a DEALLOCATE may not have run, and a name reused
	// is held again rather than let through.
	sqlPrepared map[string][]string
	// mu guards stmts, which the server→client side updates when a Parse
	// completes.
	mu sync.Mutex
	// cache holds recent classifications by statement text.
	cache map[string]classified
	// skipping drops the client's messages after a denied Parse or
	// Execute until Sync, as the target does after an error.
	skipping bool

	// in is the client as the client→server copier reads it; out the
	// client as the server→client copier writes it.
	in  *guardConn
	out *boundaryWriter

	// holding cancels the hold in progress: the client's CancelRequest
	// abandons it, as it would cancel a running statement.
	holding atomic.Pointer[context.CancelFunc]
}

// cancelHold abandons the hold in progress, if any, and reports whether
// there was one. g may be nil (a role without guardrails).
func (g *guardrail) cancelHold() bool {
	if g == nil {
		return false
	}
	if c := g.holding.Load(); c != nil {
		(*c)()
		return true
	}
	return false
}

// prepared is a named (or unnamed) statement whose execution is held.
type prepared struct {
	text      string
	verdict   verdict
	paramOIDs []uint32
}

// bound is a portal of a held statement with its parameters.
type bound struct {
	st *prepared
	// raw is the Bind message's parameter section (formats and values),
	// part of the approval's digest.
	raw     []byte
	nparams int
	values  [][]byte
	formats []int16
}

// verdict is the outcome of classifying one input.
type verdict struct {
	action string
	rules  []string
	// alerts are the rules whose action is alert.
	alerts []string
	// stmts are the explainable statements' texts.
	stmts []string
	// note says why (unparsed, estimate).
	note string
}

// rank orders actions: the strongest wins.
func rank(a string) int {
	switch a {
	case config.GuardDeny:
		return 3
	case config.GuardHold:
		return 2
	case config.GuardAlert:
		return 1
	}
	return 0
}

// decide classifies text and returns the role's verdict. params are the
// bound parameters of an extended-protocol statement (nil for Parse and
// Query): a bulk export's row estimate needs them.
func (g *guardrail) decide(ctx context.Context, text string, st *prepared, params *bound) verdict {
	res, err := g.classify(text)
	if err != nil {
		v := verdict{action: g.cfg.UnparsedAction(), rules: []string{"unparsed"}, note: "statement not parsed"}
		if v.action == config.GuardAlert {
			v.alerts = v.rules
		}
		return v
	}
	v := verdict{action: config.GuardAllow}
	for _, s := range res.Statements {
		if s.Explainable {
			v.stmts = append(v.stmts, s.Text)
		}
	}
	for _, f := range res.Findings {
		a := g.cfg.Action(string(f.Rule))
		if a == config.GuardAllow {
			continue
		}
		if f.NeedsEstimate {
			n, note := g.estimate(ctx, []string{res.Statements[f.Stmt].Text}, st, params)
			if n >= 0 && n <= int64(g.cfg.ExportRowsOrDefault()) {
				continue
			}
			if note == "" {
				note = fmt.Sprintf("estimated %d rows > export_rows %d", n, g.cfg.ExportRowsOrDefault())
			}
			v.note = note
		}
		rule := string(f.Rule)
		if f.Detail != "" {
			rule += " (" + f.Detail + ")"
		}
		if name := res.Statements[f.Stmt].Prepares; name != "" && a == config.GuardHold {
			// PREPARE runs nothing: each EXECUTE of it is held.
			g.sqlPrepared[name] = appendNew(g.sqlPrepared[name], rule)
			continue
		}
		if !contains(v.rules, rule) {
			v.rules = append(v.rules, rule)
		}
		if a == config.GuardAlert && !contains(v.alerts, rule) {
			v.alerts = append(v.alerts, rule)
		}
		if rank(a) > rank(v.action) {
			v.action = a
		}
	}
	for _, s := range res.Statements {
		if rules, ok := g.sqlPrepared[s.Executes]; ok && s.Executes != "" {
			for _, r := range rules {
				v.rules = appendNew(v.rules, "execute "+s.Executes+": "+r)
			}
			if rank(config.GuardHold) > rank(v.action) {
				v.action = config.GuardHold
			}
		}
	}
	return v
}

func appendNew(l []string, s string) []string {
	if contains(l, s) {
		return l
	}
	return append(l, s)
}

// Bounds of a session's classification cache: clients send the same
// statements again and again (prepared-statement drivers parse on every
// execution).
const (
	classifyCacheEntries = 256
	classifyCacheText    = 8 << 10
)

type classified struct {
	res *guard.Result
	err error
}

// classify classifies text, from the session's cache when it was seen
// before. Classification is pure, so a cached result is the same result.
func (g *guardrail) classify(text string) (*guard.Result, error) {
	if c, ok := g.cache[text]; ok {
		return c.res, c.err
	}
	res, err := safeClassify(g.cls, text)
	if len(text) <= classifyCacheText {
		if len(g.cache) >= classifyCacheEntries {
			clear(g.cache)
		}
		g.cache[text] = classified{res, err}
	}
	return res, err
}

// safeClassify turns a panic of the classifier into an unparsed
// statement: the role's unparsed action applies, the session lives on.
func safeClassify(c *guard.Classifier, text string) (res *guard.Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, fmt.Errorf("%w: classifier failed", guard.ErrUnparsed)
		}
	}()
	return c.Classify(text)
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// guardConn is the client connection as the client→server copier reads
// it when the role has guardrails.
type guardConn struct {
	net.Conn
	g  *guardrail
	br *bufio.Reader
	// out holds bytes ready for the copier.
	out []byte
	// max bounds a message; a longer or malformed one switches the reader
	// to passthrough so the relay's own framing checks refuse it.
	max         int
	passthrough bool
}

func (c *guardConn) Read(p []byte) (int, error) {
	// Hand the copier every message already buffered in one read, so a
	// batch (Parse, Bind, Describe, Execute, Sync) still goes upstream in
	// one write.
	for len(c.out) == 0 || (len(c.out) < len(p) && c.ready()) {
		if c.passthrough {
			if len(c.out) > 0 {
				break
			}
			return c.br.Read(p)
		}
		if err := c.next(); err != nil {
			if len(c.out) > 0 {
				break // the reader returns the error again next time
			}
			return 0, err
		}
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	return n, nil
}

// ready reports whether a whole message is buffered.
func (c *guardConn) ready() bool {
	n := c.br.Buffered()
	if n < headerLen {
		return false
	}
	hdr, _ := c.br.Peek(headerLen)
	l := int(binary.BigEndian.Uint32(hdr[1:]))
	return l >= 4 && n >= l+1
}

// next reads one whole message and queues what the target gets for it.
func (c *guardConn) next() error {
	hdr, err := c.br.Peek(headerLen)
	if err != nil {
		if len(hdr) > 0 && errors.Is(err, io.EOF) {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	l := int64(binary.BigEndian.Uint32(hdr[1:]))
	if l < 4 || l-4 > int64(c.max) {
		c.passthrough = true
		return nil
	}
	size := headerLen + int(l-4)
	// A message that fits the buffer is read in place; message copies
	// what it forwards.
	if msg, err := c.br.Peek(size); err == nil {
		c.out = c.g.message(msg[0], msg, c.out)
		c.br.Discard(size)
		return nil
	} else if !errors.Is(err, bufio.ErrBufferFull) {
		if errors.Is(err, io.EOF) {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	msg := make([]byte, size)
	if _, err := io.ReadFull(c.br, msg); err != nil {
		if errors.Is(err, io.EOF) {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	c.out = c.g.message(msg[0], msg, c.out)
	return nil
}

// message returns out with what the target gets for the client's msg.
func (g *guardrail) message(typ byte, msg, out []byte) []byte {
	ctx := g.s.Context()
	body := msg[headerLen:]
	if g.skipping {
		switch typ {
		case 'S':
			g.skipping = false
			return append(out, msg...)
		case 'H', 'X':
			return append(out, msg...)
		}
		return out
	}
	switch typ {
	case 'Q':
		q, _, ok := cstring(body)
		if !ok {
			break // the observer refuses it
		}
		text := string(q)
		v := g.decide(ctx, text, nil, nil)
		return g.apply(ctx, v, text, nil, msg, out, false)
	case 'F':
		// A fast-path call names a function by OID; there is no statement
		// to parse.
		v := verdict{action: g.cfg.UnparsedAction(), rules: []string{"unparsed (function call)"}}
		if v.action == config.GuardAlert {
			v.alerts = v.rules
		}
		return g.apply(ctx, v, "<fast-path function call>", nil, msg, out, false)
	case 'P':
		name, rest, ok := cstring(body)
		if !ok {
			break
		}
		q, rest, ok := cstring(rest)
		if !ok {
			break
		}
		text := string(q)
		st := &prepared{text: text, paramOIDs: paramOIDs(rest)}
		v := g.decide(ctx, text, st, nil)
		st.verdict = v
		switch v.action {
		case config.GuardDeny:
			return g.apply(ctx, v, text, nil, msg, out, true)
		case config.GuardHold:
			// Parsing runs nothing: the execution is held, once per
			// Execute, with the parameters it runs with.
			g.setStmt(string(name), st)
			g.note(v, "prepared", text)
			g.out.expect(false, nil)
			return append(out, msg...)
		case config.GuardAlert:
			g.alert(v, text)
		}
		g.out.expect(false, g.replaced(string(name)))
		return append(out, msg...)
	case 'B':
		portal, rest, ok := cstring(body)
		if !ok {
			break
		}
		stmt, rest, ok := cstring(rest)
		if !ok {
			break
		}
		delete(g.portals, string(portal))
		if st := g.stmt(string(stmt)); st != nil {
			b, ok := parseBind(rest)
			if !ok {
				// Held all the same: the digest covers the raw bytes.
				b = &bound{raw: bytes.Clone(rest)}
			}
			b.st = st
			g.portals[string(portal)] = b
		}
	case 'E':
		portal, _, ok := cstring(body)
		if !ok {
			break
		}
		if b := g.portals[string(portal)]; b != nil {
			// Every Execute of a held statement is held on its own, with
			// the parameters it runs with.
			return g.apply(ctx, b.st.verdict, b.st.text, b, msg, out, true)
		}
	}
	// Close is not acted on: the target ignores it after an error in the
	// batch, so a held statement stays held under its name.
	if typ == 'B' {
		g.out.expect(false, nil)
	}
	return append(out, msg...)
}

func (g *guardrail) stmt(name string) *prepared {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stmts[name]
}

func (g *guardrail) setStmt(name string, st *prepared) {
	g.mu.Lock()
	g.stmts[name] = st
	g.mu.Unlock()
}

// replaced returns what to do when the target completes an unheld Parse
// of name: the unnamed statement it replaces is no longer held. A named
// statement is never replaced (PostgreSQL refuses a Parse of an existing
// name), and a Parse the target skipped after an error replaces nothing:
// both keep a held statement held.
func (g *guardrail) replaced(name string) func() {
	if name != "" {
		return nil
	}
	g.mu.Lock()
	old := g.stmts[""]
	g.mu.Unlock()
	if old == nil {
		return nil
	}
	return func() {
		g.mu.Lock()
		if g.stmts[""] == old {
			delete(g.stmts, "")
		}
		g.mu.Unlock()
	}
}

// apply carries out a verdict for msg: forward it, replace it with the
// broker's error, or hold it.
func (g *guardrail) apply(ctx context.Context, v verdict, text string, b *bound, msg, out []byte, extended bool) []byte {
	switch v.action {
	case config.GuardAllow:
		return append(out, msg...)
	case config.GuardAlert:
		g.alert(v, text)
		return append(out, msg...)
	case config.GuardHold:
		if len(v.alerts) > 0 {
			g.alert(v, text)
		}
		d, ok := g.hold(ctx, v, text, b)
		if ok {
			return append(out, msg...)
		}
		return g.refuse(out, d, extended)
	}
	g.note(v, "denied", text)
	g.s.Audit("postgres.guardrail", "denied", "statement denied by guardrail "+strings.Join(v.rules, ", "),
		map[string]any{"rules": v.rules})
	return g.refuse(out, "custos: statement denied by guardrail "+strings.Join(v.rules, ", "), extended)
}

// refuse queues, in place of the client's message, a statement that makes
// the target raise the broker's error (SQLSTATE 42501): the error then
// reaches the client in protocol order, the target's transaction state
// follows it (a transaction block is aborted, as by any error), and the
// target itself ignores the rest of an extended-protocol batch until Sync.
// In the extended protocol the replacement is Parse, Bind and Execute of
// the unnamed statement; the writer to the client drops their
// ParseComplete and BindComplete.
func (g *guardrail) refuse(out []byte, msg string, extended bool) []byte {
	sql := raiseSQL(msg)
	if !extended {
		return appendMsg(out, 'Q', cstr(sql))
	}
	g.skipping = true
	g.out.expect(true, g.replaced(""))
	out = appendMsg(out, 'P', cstr(""), cstr(sql), []byte{0, 0})
	g.out.expect(true, nil)
	out = appendMsg(out, 'B', cstr(""), cstr(""), []byte{0, 0, 0, 0, 0, 0})
	return appendMsg(out, 'E', cstr(""), []byte{0, 0, 0, 0})
}

// raiseSQL is a DO block raising msg with SQLSTATE 42501; msg is the
// broker's own text (rule names, approver names), quoted as a literal.
func raiseSQL(msg string) string {
	lit := "'" + strings.ReplaceAll(strings.ReplaceAll(msg, "'", "''"), "\x00", "") + "'"
	return "DO $custos$BEGIN RAISE EXCEPTION USING ERRCODE = '" + codeGuardrail + "', MESSAGE = " + lit + "; END$custos$"
}

// note records a guardrail decision in the session's recording.
func (g *guardrail) note(v verdict, outcome, text string) {
	e := event.Event{Kind: event.KindNote, Op: "guardrail", Name: outcome, Text: text, Args: v.rules}
	if err := g.s.Record(e); err != nil {
		g.s.p.Log().Warn("postgres guardrail: record", "session", g.s.ID, "err", err)
	}
}

// alert records, audits and sends an alert for the statement.
func (g *guardrail) alert(v verdict, text string) {
	g.note(v, "alert", text)
	g.s.Audit("postgres.guardrail", "alert", "statement touched guardrail "+strings.Join(v.alerts, ", "),
		map[string]any{"rules": v.alerts})
	if a := g.s.p.opts.Alerts; a != nil {
		a.GuardrailAlert(GuardrailAlert{Session: g.s.ID, User: g.s.Grant.User, Target: g.s.Grant.Target,
			Role: g.s.Grant.Role, Database: g.s.Database, Rules: v.alerts, Text: text})
	}
}

// paramOIDs reads a Parse message's parameter types.
func paramOIDs(b []byte) []uint32 {
	if len(b) < 2 {
		return nil
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if len(b) < 4*n {
		return nil
	}
	out := make([]uint32, n)
	for i := range out {
		out[i] = binary.BigEndian.Uint32(b[4*i:])
	}
	return out
}

// parseBind reads the parameter section of a Bind message (after portal
// and statement names).
func parseBind(b []byte) (*bound, bool) {
	// The message may live in the reader's buffer: keep a copy.
	b = bytes.Clone(b)
	fmts, rest, ok := formats(b)
	if !ok {
		return nil, false
	}
	if len(rest) < 2 {
		return nil, false
	}
	n := int(binary.BigEndian.Uint16(rest))
	p := rest[2:]
	bd := &bound{nparams: n}
	for i := range len(fmts) / 2 {
		bd.formats = append(bd.formats, int16(binary.BigEndian.Uint16(fmts[2*i:])))
	}
	for range n {
		if len(p) < 4 {
			return nil, false
		}
		l := int32(binary.BigEndian.Uint32(p))
		p = p[4:]
		if l < 0 {
			bd.values = append(bd.values, nil)
			continue
		}
		if int(l) > len(p) {
			return nil, false
		}
		bd.values = append(bd.values, p[:l])
		p = p[l:]
	}
	// The digest covers formats, values and result formats.
	bd.raw = b
	return bd, true
}

func cstr(s string) []byte { return append([]byte(s), 0) }

// appendMsg appends a frontend message of type typ with the given body
// parts.
func appendMsg(out []byte, typ byte, parts ...[]byte) []byte {
	n := 4
	for _, p := range parts {
		n += len(p)
	}
	out = append(out, typ, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(out[len(out)-4:], uint32(n))
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

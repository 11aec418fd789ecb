package pgproxy

import (
	"context"
	"encoding/binary"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/protocols/postgres/masking"
	"github.com/custos-pam/custos/recorder/event"
)

// Masking on the wire (docs/data-protection.md). For a role with masking
// rules the server copier runs a maskHandler instead of the plain
// observer: it resolves each RowDescription's columns against the
// catalog, rewrites every DataRow by the role's policy before the client
// and the recording see it, and refuses COPY TO STDOUT. The client
// copier tells it, through the masker, which statement or portal each
// result belongs to, so rows of the extended protocol (Execute without a
// RowDescription of its own) are rewritten with the right columns and
// formats. Roles without rules never reach this file.

// rawField is one field of a RowDescription.
type rawField struct {
	table  uint32
	attnum int16
	typ    uint32
	format int16
}

// description is a RowDescription with its columns resolved.
type description struct {
	raw  []rawField
	cols []*masking.Column
}

// stmtInfo is a prepared statement; desc is set when the target answers
// the client's Describe of it.
type stmtInfo struct{ desc *description }

// portalInfo is a bound portal: the statement it was bound from, the
// result formats the Bind asked for and, when the client described the
// portal, its own description.
type portalInfo struct {
	stmt    *stmtInfo
	formats []byte
	desc    *description
	fields  []masking.Field
}

type pendingKind uint8

const (
	pendQuery pendingKind = iota
	pendDescribeStmt
	pendDescribePortal
	pendExecute
	pendSync
)

// pending is a client message whose answer the target has yet to send,
// in order.
type pending struct {
	kind   pendingKind
	stmt   *stmtInfo
	portal *portalInfo
}

// masker is the masking state the two copiers share.
type masker struct {
	policy *masking.Policy
	role   string
	// summary describes the rules for the recording; unmask, for an
	// unmask variant, what it unmasks.
	summary, unmask string
	rules           map[string]string
	unmasked        []string
	// clear holds the indices of the classifications an unmask grant
	// passes; shown, the columns already audited as returned in clear
	// (server copier only). See mask_unmask.go.
	clear map[int]bool
	shown map[string]bool

	mu      sync.Mutex
	queue   []pending
	stmts   map[string]*stmtInfo
	portals map[string]*portalInfo
}

func newMasker(p *masking.Policy, role string, rules map[string]string) *masker {
	if p == nil {
		return nil
	}
	return &masker{policy: p, role: role, summary: maskingSummary(role, rules), rules: rules, stmts: map[string]*stmtInfo{}, portals: map[string]*portalInfo{}}
}

// client tracks a client message before it is forwarded.
func (m *masker) client(typ byte, b []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch typ {
	case 'Q', 'F':
		// A FunctionCall, like a Query, is answered up to ReadyForQuery.
		m.queue = append(m.queue, pending{kind: pendQuery})
	case 'S':
		m.queue = append(m.queue, pending{kind: pendSync})
	case 'P':
		name, _, ok := cstring(b)
		if !ok {
			return malformed("Parse")
		}
		m.stmts[string(name)] = &stmtInfo{}
	case 'B':
		portal, rest, ok := cstring(b)
		if !ok {
			return malformed("Bind")
		}
		stmt, rest, ok := cstring(rest)
		if !ok {
			return malformed("Bind")
		}
		_, rest, ok = formats(rest)
		if !ok || len(rest) < 2 {
			return malformed("Bind")
		}
		n := int(binary.BigEndian.Uint16(rest))
		rest = rest[2:]
		for range n {
			if len(rest) < 4 {
				return malformed("Bind")
			}
			l := int32(binary.BigEndian.Uint32(rest))
			rest = rest[4:]
			if l > 0 {
				if int(l) > len(rest) {
					return malformed("Bind")
				}
				rest = rest[l:]
			}
		}
		rf, _, ok := formats(rest)
		if !ok {
			return malformed("Bind")
		}
		m.portals[string(portal)] = &portalInfo{stmt: m.stmts[string(stmt)], formats: append([]byte(nil), rf...)}
	case 'D', 'C':
		if len(b) < 2 {
			return malformed("Describe")
		}
		name, _, ok := cstring(b[1:])
		if !ok {
			return malformed("Describe")
		}
		switch {
		case typ == 'D' && b[0] == 'S':
			m.queue = append(m.queue, pending{kind: pendDescribeStmt, stmt: m.stmts[string(name)]})
		case typ == 'D':
			m.queue = append(m.queue, pending{kind: pendDescribePortal, portal: m.portals[string(name)]})
		case b[0] == 'S':
			delete(m.stmts, string(name))
		default:
			delete(m.portals, string(name))
		}
	case 'E':
		portal, _, ok := cstring(b)
		if !ok {
			return malformed("Execute")
		}
		m.queue = append(m.queue, pending{kind: pendExecute, portal: m.portals[string(portal)]})
	}
	return nil
}

// head returns the oldest unanswered client message.
func (m *masker) head() (pending, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.queue) == 0 {
		return pending{}, false
	}
	return m.queue[0], true
}

// pop drops the oldest unanswered message when it is of one of kinds.
func (m *masker) pop(kinds ...pendingKind) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.queue) > 0 {
		for _, k := range kinds {
			if m.queue[0].kind == k {
				m.queue = m.queue[1:]
				return
			}
		}
	}
}

// answered drops the messages a ReadyForQuery answers: up to and
// including the oldest Query (or FunctionCall) or Sync.
func (m *masker) answered() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for len(m.queue) > 0 {
		k := m.queue[0].kind
		m.queue = m.queue[1:]
		if k == pendQuery || k == pendSync {
			return
		}
	}
}

// failed drops the messages an ErrorResponse leaves unanswered. An error
// of a Query ends it at the next ReadyForQuery; an error in the extended
// protocol makes the target discard every message up to the next Sync,
// Queries included.
func (m *masker) failed() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.queue) > 0 && m.queue[0].kind == pendQuery {
		return
	}
	for len(m.queue) > 0 && m.queue[0].kind != pendSync {
		m.queue = m.queue[1:]
	}
}

// maskHandler is the server copier's frame handler for a masked session:
// it wraps the session's serverObserver, which sees exactly what the
// client receives.
type maskHandler struct {
	ctx context.Context
	m   *masker
	so  *serverObserver
	cat *catalog
	// out is what the copier forwards for the messages scanned so far.
	out []byte
	// cur are the fields of the simple-protocol statement being answered,
	// curDesc their description.
	cur     []masking.Field
	curDesc *description
	// noted is set once the current result's columns shown in clear under
	// an unmask grant are recorded.
	noted bool
	// dropping is set from a refused CopyOutResponse to the end of that
	// COPY: its data is read and discarded.
	dropping bool
	tables   []uint32
}

func (h *maskHandler) wants(typ byte, _ int) bool { return !(h.dropping && typ == 'd') }

func (h *maskHandler) streamed(byte, int) error { return nil }

func (h *maskHandler) output() []byte { return h.out }
func (h *maskHandler) reset()         { h.out = h.out[:0] }

// forward appends a message to the output and shows it to the observer.
func (h *maskHandler) forward(typ byte, body []byte) error {
	at := len(h.out)
	h.out = append(h.out, typ, 0, 0, 0, 0)
	h.out = append(h.out, body...)
	binary.BigEndian.PutUint32(h.out[at+1:], uint32(len(body)+4))
	return h.observe(typ, h.out[at+headerLen:])
}

func (h *maskHandler) observe(typ byte, body []byte) error {
	if h.so.wants(typ, len(body)) {
		return h.so.message(typ, body)
	}
	if err := h.so.streamed(typ, len(body)); err != nil {
		return err
	}
	h.so.body(body)
	return nil
}

// message handles one whole server message. On error nothing of it is
// forwarded: the scanner did not consume it.
func (h *maskHandler) message(typ byte, b []byte) error {
	start := len(h.out)
	err := h.handle(typ, b)
	if err != nil {
		h.out = h.out[:start]
	}
	return err
}

func (h *maskHandler) handle(typ byte, b []byte) error {
	if h.dropping {
		switch typ {
		case 'd', 'c':
			return nil
		case 'C':
			h.dropping = false
			h.m.pop(pendExecute)
			return nil
		case 'E':
			// The client already has the refusal.
			h.dropping = false
			h.m.failed()
			return nil
		}
	}
	switch typ {
	case 'T':
		return h.rowDescription(b)
	case 'n':
		h.m.pop(pendDescribeStmt, pendDescribePortal)
	case 'D':
		return h.dataRow(b)
	case 'C', 's', 'I':
		h.m.pop(pendExecute)
		h.cur, h.curDesc, h.noted = nil, nil, false
	case 'E':
		h.m.failed()
		h.cur, h.curDesc, h.noted = nil, nil, false
		return h.forward(typ, withoutDetail(b))
	case 'Z':
		h.m.answered()
		h.cur, h.curDesc, h.noted = nil, nil, false
	case 'H', 'W':
		return h.refuseCopy()
	case 'V':
		return h.functionResult(b)
	case 'N':
		return h.forward(typ, withoutDetail(b))
	}
	return h.forward(typ, b)
}

// functionResult rewrites a FunctionCallResponse: a function's result is
// unknown data, relayed only when the role passes unknown fields.
func (h *maskHandler) functionResult(b []byte) error {
	if h.m.policy.Unknown() == masking.Pass || len(b) < 4 || int32(binary.BigEndian.Uint32(b)) < 0 {
		return h.forward('V', b)
	}
	return h.forward('V', []byte{0xff, 0xff, 0xff, 0xff})
}

// withoutDetail drops the detail and context fields of an ErrorResponse
// or NoticeResponse: they may quote row values ("Key (subject_id)=(…)
// already exists", "Failing row contains (…)").
func withoutDetail(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for len(b) > 0 && b[0] != 0 {
		k := b[0]
		v, rest, ok := cstring(b[1:])
		if !ok {
			return append(out, 0)
		}
		if k != 'D' && k != 'W' {
			out = append(out, k)
			out = append(out, v...)
			out = append(out, 0)
		}
		b = rest
	}
	return append(out, 0)
}

// refuseCopy answers a COPY TO STDOUT with an error instead of its data:
// the proxy cannot tell which columns a COPY carries, so a masked role
// gets none.
func (h *maskHandler) refuseCopy() error {
	h.dropping = true
	h.so.evs = append(h.so.evs, event.Event{Kind: event.KindNote, Op: "masking_refused",
		Text: "COPY TO STDOUT refused: role " + h.m.role + " masks classified data"})
	msg, _ := (&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: codeInsufficientPrivilege,
		Message: "custos: COPY TO STDOUT is refused for role " + h.m.role + ": its results are masked",
		Hint:    "select the columns instead; their values are masked by the role's rules"}).Encode(nil)
	return h.forward('E', msg[headerLen:])
}

// rowDescription resolves the columns, remembers them for the statement,
// portal or query being answered and forwards the description with masked
// fields of non-string types retyped as text (their values no longer
// parse as the type).
func (h *maskHandler) rowDescription(b []byte) error {
	if len(b) < 2 {
		return malformed("RowDescription")
	}
	n := int(binary.BigEndian.Uint16(b))
	d := &description{raw: make([]rawField, 0, min(n, len(b)/19+1))}
	h.tables = h.tables[:0]
	// offs are the offsets of each field's fixed part in b.
	offs := make([]int, 0, n)
	rest := b[2:]
	for range n {
		_, r, ok := cstring(rest)
		if !ok || len(r) < 18 {
			return malformed("RowDescription")
		}
		offs = append(offs, len(b)-len(r))
		f := rawField{table: binary.BigEndian.Uint32(r), attnum: int16(binary.BigEndian.Uint16(r[4:])),
			typ: binary.BigEndian.Uint32(r[6:]), format: int16(binary.BigEndian.Uint16(r[16:]))}
		d.raw = append(d.raw, f)
		h.tables = append(h.tables, f.table)
		rest = r[18:]
	}
	if err := h.cat.resolve(h.ctx, h.tables); err != nil {
		h.so.evs = append(h.so.evs, event.Event{Kind: event.KindNote, Op: "masking_catalog",
			Text: "catalog lookup failed; unresolved columns get the role's unknown action: " + err.Error()})
		h.so.s.p.Log().Warn("postgres masking catalog lookup failed", "session", h.so.s.ID, "err", err)
	}
	d.cols = make([]*masking.Column, len(d.raw))
	for i, f := range d.raw {
		if f.table != 0 {
			d.cols[i] = h.cat.cols[colKey{f.table, f.attnum}]
		}
	}
	if p, ok := h.m.head(); ok {
		switch p.kind {
		case pendDescribeStmt:
			if p.stmt != nil {
				p.stmt.desc = d
			}
			h.m.pop(pendDescribeStmt)
		case pendDescribePortal:
			if p.portal != nil {
				p.portal.desc, p.portal.fields = d, nil
			}
			h.m.pop(pendDescribePortal)
		default:
			h.cur, h.curDesc, h.noted = h.fields(d, nil, false), d, false
		}
	}
	// Forward, retyping masked fields whose values become text; the
	// observer records the description the client gets.
	at := len(h.out)
	h.out = append(h.out, 'T', 0, 0, 0, 0)
	h.out = append(h.out, b...)
	binary.BigEndian.PutUint32(h.out[at+1:], uint32(len(b)+4))
	for i, f := range d.raw {
		a := h.field(d, i, masking.Text).Action
		if a == masking.Pass || a == masking.Null || masking.Textual(f.typ, masking.Binary) {
			continue
		}
		o := at + headerLen + offs[i]
		binary.BigEndian.PutUint32(h.out[o+6:], 25)          // text
		binary.BigEndian.PutUint16(h.out[o+10:], 0xffff)     // typlen -1
		binary.BigEndian.PutUint32(h.out[o+12:], 0xffffffff) // typmod -1
	}
	return h.observe('T', h.out[at+headerLen:])
}

// fields classifies a description's columns, with the formats of a Bind
// when bound is set, else the description's own.
func (h *maskHandler) fields(d *description, fmts []byte, bound bool) []masking.Field {
	out := make([]masking.Field, len(d.raw))
	for i, f := range d.raw {
		format := masking.Text
		if (bound && binaryAt(fmts, i)) || (!bound && f.format == 1) {
			format = masking.Binary
		}
		out[i] = h.field(d, i, format)
	}
	return out
}

// field classifies column i of d: an expression (table OID 0) by the
// role's unknown action, a table column the catalog did not resolve as
// unresolvable (never passed).
func (h *maskHandler) field(d *description, i, format int) masking.Field {
	f := d.raw[i]
	if d.cols[i] == nil && f.table != 0 {
		return h.m.policy.Unresolvable(f.typ, format)
	}
	return h.m.policy.Field(d.cols[i], f.typ, format)
}

// current returns the fields of the result being answered: the simple
// query's, or those of the portal being executed. nil means unknown:
// every value is then rewritten as unresolved.
func (h *maskHandler) current() []masking.Field {
	p, ok := h.m.head()
	if !ok || p.kind != pendExecute {
		return h.cur
	}
	pi := p.portal
	switch {
	case pi == nil:
		return nil
	case pi.fields != nil:
	case pi.desc != nil:
		pi.fields = h.fields(pi.desc, nil, false)
	case pi.stmt != nil && pi.stmt.desc != nil:
		pi.fields = h.fields(pi.stmt.desc, pi.formats, true)
	}
	return pi.fields
}

func (h *maskHandler) dataRow(b []byte) error {
	if h.m.clear != nil && !h.noted {
		h.noteClear()
	}
	at := len(h.out)
	h.out = append(h.out, 'D', 0, 0, 0, 0)
	var err error
	h.out, err = h.m.policy.Rewrite(h.out, b, h.current())
	if err != nil {
		return malformed("DataRow")
	}
	binary.BigEndian.PutUint32(h.out[at+1:], uint32(len(h.out)-at-1))
	return h.observe('D', h.out[at+headerLen:])
}

// maskingPolicy returns the masking policy of the grant's role and its
// rules, nil when it has none.
func (p *Proxy) maskingPolicy(g broker.Grant, t *config.Target, role *config.Role) (*masking.Policy, *masker, *refusal) {
	if role == nil {
		return nil, nil, nil
	}
	rules, unmasked := t.MaskingRules(role)
	if len(rules) == 0 {
		return nil, nil, nil
	}
	refuse := func(err error) *refusal {
		return &refusal{grantID: g.ID, clientError: &clientError{Code: codeCannotConnectNow,
			Msg: "custos: masking for role " + g.Role + " is not available; connection refused", err: err}}
	}
	if p.opts.DataDictionary == nil {
		return nil, nil, refuse(errors.New("no data dictionary"))
	}
	pol, err := p.opts.DataDictionary.Policy(rules)
	if err != nil {
		return nil, nil, refuse(err)
	}
	m := newMasker(pol, g.Role, rules)
	m.unmasked = unmasked
	m.setClear(unmasked)
	if len(unmasked) > 0 {
		m.unmask = "unmask in effect for " + strings.Join(unmasked, ", ") + " (role " + g.Role + ", the unmasked variant of " + role.Unmask.Role + ", until " + g.EndsAt.UTC().Format(time.RFC3339) + ")"
	}
	return pol, m, nil
}

// maskingSummary describes a role's rules for the recording.
func maskingSummary(role string, rules map[string]string) string {
	keys := slices.Sorted(maps.Keys(rules))
	var b strings.Builder
	b.WriteString("masking in effect for role " + role + ":")
	for _, k := range keys {
		b.WriteString(" " + k + "=" + rules[k])
	}
	if _, ok := rules[config.MaskUnknown]; !ok {
		b.WriteString(" unknown=mask")
	}
	return b.String()
}

// auditDetails are the session.start audit details of a masked session:
// the rules in effect and, for an unmask variant, what it unmasks.
func (m *masker) auditDetails() map[string]any {
	if m == nil {
		return nil
	}
	d := map[string]any{"masking": maps.Clone(m.rules)}
	if len(m.unmasked) > 0 {
		d["unmasked"] = slices.Clone(m.unmasked)
	}
	return d
}

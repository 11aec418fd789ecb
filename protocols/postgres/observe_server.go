package pgproxy

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"strconv"
	"unsafe"

	"github.com/custos-pam/custos/recorder/event"
)

// Default result caps when a target records results without setting them.
const (
	defaultResultRows  = 1000
	defaultResultBytes = 1 << 20
)

// serverObserver inspects server→client messages and records command
// tags, errors, COPY and transaction boundaries.
type serverObserver struct {
	s   *session
	evs []event.Event
	// tx is the transaction status from the latest ReadyForQuery.
	tx byte
	// lastTag is the latest command tag; it tells COMMIT from ROLLBACK.
	lastTag string
	// rows counts DataRows of the current statement.
	rows int64
	// copy counts CopyData bytes since CopyOutResponse.
	copy int64
	// tags interns repeated command tags.
	tags map[string]string

	// Result evidence (always on): the columns of the latest
	// RowDescription, a SHA-256 over the bodies of the statement's DataRow
	// (or COPY OUT CopyData) messages in order, and how many bytes it took.
	dig     digest
	cols    []string
	desc    bool
	copyOut bool
	// lastDesc is the body of the RowDescription cols was parsed from; a
	// repeated one reuses cols (they are never modified once recorded).
	lastDesc []byte

	// Result recording (record_results).
	results           bool
	rowsCap, bytesCap int
	recRows, recBytes int
	resultsCapped     bool
}

func newServerObserver(s *session, tx byte, results bool, rowsCap, bytesCap int) *serverObserver {
	if rowsCap <= 0 {
		rowsCap = defaultResultRows
	}
	if bytesCap <= 0 {
		bytesCap = defaultResultBytes
	}
	return &serverObserver{s: s, tx: tx, tags: make(map[string]string), results: results, rowsCap: rowsCap, bytesCap: bytesCap}
}

func (o *serverObserver) wants(typ byte, n int) bool {
	switch typ {
	case 'C', 'E', 'Z', 'G', 'H', 'W', 'T':
		return true
	case 'D':
		return o.results && !o.resultsCapped && n <= o.bytesCap
	}
	return false
}

func (o *serverObserver) streamed(typ byte, n int) error {
	o.dig.cur = typ
	switch typ {
	case 'D':
		o.rows++
		if o.results && !o.resultsCapped {
			// Too large to record under the byte cap.
			o.resultsCapped = true
		}
	case 'd':
		o.copy += int64(n)
	case 'c':
		o.evs = append(o.evs, event.Event{Kind: event.KindPGCopy, Op: "done", Text: "out", N: o.copy})
		o.copy = 0
	case 'I':
		o.endStatement()
		o.evs = append(o.evs, event.Event{Kind: event.KindPGComplete, Op: "empty"})
	case 's':
		o.result(-1)
		o.evs = append(o.evs, event.Event{Kind: event.KindPGComplete, Op: "suspended", N: o.rows})
		o.endStatement()
	}
	return nil
}

// body hashes the body bytes of streamed DataRow and CopyData messages.
func (o *serverObserver) body(p []byte) {
	if o.dig.cur == 'D' || o.dig.cur == 'd' {
		o.dig.write(p)
	}
}

// result records the statement's result evidence (a pg_result event)
// when it returned a row description, rows or COPY data; tagRows is the
// command tag's row count, or -1.
func (o *serverObserver) result(tagRows int64) {
	switch {
	case o.copyOut:
		o.evs = append(o.evs, event.Event{Kind: event.KindPGResult, Op: "copy_out",
			Text: o.dig.hex(), N: max(tagRows, 0), Bytes: o.dig.n})
	case o.desc || o.rows > 0:
		var cols []string
		if o.desc {
			cols = o.cols
		}
		o.evs = append(o.evs, event.Event{Kind: event.KindPGResult, Op: "rows",
			Text: o.dig.hex(), N: o.rows, Bytes: o.dig.n, Args: cols})
	}
	o.dig.reset()
}

// rowDescription keeps the columns of a RowDescription as "oid:name".
func (o *serverObserver) rowDescription(b []byte) error {
	if len(b) < 2 {
		return malformed("RowDescription")
	}
	if o.cols != nil && string(b) == string(o.lastDesc) {
		o.desc = true
		return nil
	}
	o.lastDesc = append(o.lastDesc[:0], b...)
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	cols := make([]string, 0, min(n, len(b)/19+1))
	for range n {
		name, rest, ok := cstring(b)
		if !ok || len(rest) < 18 {
			return malformed("RowDescription")
		}
		oid := binary.BigEndian.Uint32(rest[6:])
		cols = append(cols, strconv.FormatUint(uint64(oid), 10)+":"+string(name))
		b = rest[18:]
	}
	o.cols, o.desc = cols, true
	return nil
}

func (o *serverObserver) message(typ byte, b []byte) error {
	switch typ {
	case 'C':
		tag, _, ok := cstring(b)
		if !ok {
			return malformed("CommandComplete")
		}
		t := o.intern(tag)
		o.lastTag = t
		n, ok := tagRows(tag)
		if !ok {
			n = o.rows
		}
		o.result(n)
		o.evs = append(o.evs, event.Event{Kind: event.KindPGComplete, Text: t, N: n})
		o.endStatement()
		o.desc, o.copyOut = false, false
	case 'T':
		return o.rowDescription(b)
	case 'E':
		if o.rows > 0 || o.copyOut {
			o.result(-1)
		}
		o.dig.reset()
		o.desc, o.copyOut = false, false
		code, sev, msg := errorFields(b)
		o.evs = append(o.evs, event.Event{Kind: event.KindPGError, Op: code, Name: sev, Text: msg})
		o.endStatement()
	case 'Z':
		if len(b) != 1 {
			return malformed("ReadyForQuery")
		}
		o.readyForQuery(b[0])
	case 'G', 'H', 'W':
		if len(b) < 3 {
			return malformed("CopyResponse")
		}
		op := "in"
		switch typ {
		case 'H':
			op = "out"
		case 'W':
			op = "both"
		}
		format := "text"
		if b[0] == 1 {
			format = "binary"
		}
		o.copy = 0
		o.dig.reset()
		o.copyOut = typ == 'H'
		o.evs = append(o.evs, event.Event{Kind: event.KindPGCopy, Op: op, Text: format, N: int64(binary.BigEndian.Uint16(b[1:]))})
	case 'D':
		o.rows++
		o.dig.write(b)
		o.recordRow(b)
	}
	return nil
}

// digest is a reusable SHA-256 over message bodies. It allocates when
// created and, for the hex sums it returns, once per block (blocks double
// up to digestArena bytes).
type digest struct {
	h   hash.Hash
	n   int64
	sum [sha256.Size]byte
	// arena holds hex sums already returned (never rewritten) and room
	// for more.
	arena []byte
	// cur is the type of the message being streamed through.
	cur byte
}

func (d *digest) write(p []byte) {
	if d.h == nil {
		d.h = sha256.New()
	}
	d.h.Write(p)
	d.n += int64(len(p))
}

// hex returns the lowercase hex SHA-256 of what was written since the
// last reset (that of no bytes when nothing was).
func (d *digest) hex() string {
	if d.h == nil {
		d.h = sha256.New()
	}
	if cap(d.arena)-len(d.arena) < 2*sha256.Size {
		// Blocks double from a few sums, so a quiet session holds little.
		d.arena = make([]byte, 0, min(max(2*cap(d.arena), 8*2*sha256.Size), digestArena))
	}
	i := len(d.arena)
	d.arena = d.arena[:i+2*sha256.Size]
	hex.Encode(d.arena[i:], d.h.Sum(d.sum[:0]))
	return unsafe.String(&d.arena[i], 2*sha256.Size)
}

// digestArena is the size of a block of hex sums: 256 statements' worth.
const digestArena = 256 * 2 * sha256.Size

func (d *digest) reset() {
	if d.h != nil && d.n > 0 {
		d.h.Reset()
	}
	d.n = 0
}

// recordRow records one DataRow's values within the statement's caps.
func (o *serverObserver) recordRow(b []byte) {
	if o.recRows >= o.rowsCap || o.recBytes+len(b) > o.bytesCap {
		o.resultsCapped = true
		return
	}
	if len(b) < 2 {
		return
	}
	size := len(b)
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	vals := make([]string, 0, min(n, len(b)/4+1))
	for range n {
		if len(b) < 4 {
			return
		}
		l := int32(binary.BigEndian.Uint32(b))
		b = b[4:]
		if l < 0 {
			vals = append(vals, nullArg)
			continue
		}
		if int(l) > len(b) {
			return
		}
		vals = append(vals, renderValue(b[:l], false))
		b = b[l:]
	}
	o.recRows++
	o.recBytes += size
	o.evs = append(o.evs, event.Event{Kind: event.KindPGRow, Args: vals})
}

// endStatement resets per-statement counters, noting capped results.
func (o *serverObserver) endStatement() {
	if o.resultsCapped && o.results {
		o.evs = append(o.evs, event.Event{Kind: event.KindNote, Op: "results_capped",
			Text: "result rows beyond the target's record_results caps were not recorded", N: o.rows - int64(o.recRows)})
	}
	o.rows, o.recRows, o.recBytes, o.resultsCapped = 0, 0, 0, false
}

// readyForQuery records transaction boundaries from the status change:
// I idle, T in a transaction block, E in a failed one.
func (o *serverObserver) readyForQuery(tx byte) {
	prev := o.tx
	o.tx = tx
	o.s.busy.Store(false)
	if prev == tx {
		return
	}
	add := func(op string) {
		o.evs = append(o.evs, event.Event{Kind: event.KindPGTx, Op: op})
	}
	switch {
	case prev == 'I' && tx == 'T':
		add("begin")
	case prev == 'I' && tx == 'E':
		add("begin")
		add("failed")
	case prev == 'T' && tx == 'E':
		add("failed")
	case prev == 'T' && tx == 'I':
		if o.lastTag == "ROLLBACK" {
			add("rollback")
		} else {
			add("commit")
		}
	case prev == 'E' && tx == 'I':
		add("rollback")
	}
}

// intern returns tag as a string, reusing the string of an identical
// earlier tag so repeated tags do not allocate.
func (o *serverObserver) intern(tag []byte) string { return intern(o.tags, tag) }

// intern returns b as a string, from m when an identical one was seen;
// m keeps up to 256 short strings.
func intern(m map[string]string, b []byte) string {
	if t, ok := m[string(b)]; ok {
		return t
	}
	t := string(b)
	if len(m) < 256 && len(t) <= 64 {
		m[t] = t
	}
	return t
}

// tagRows returns the row count of a command tag that carries one
// (SELECT n, INSERT oid n, UPDATE n, DELETE n, MERGE n, FETCH n, MOVE n,
// COPY n).
func tagRows(tag []byte) (int64, bool) {
	i := len(tag)
	for i > 0 && tag[i-1] >= '0' && tag[i-1] <= '9' {
		i--
	}
	if i == len(tag) || i == 0 || tag[i-1] != ' ' || len(tag)-i > 18 {
		return 0, false
	}
	var n int64
	for _, c := range tag[i:] {
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// errorFields extracts the SQLSTATE, the (non-localized when present)
// severity and the primary message of an ErrorResponse body. Detail, hint
// and context are not recorded: they may quote row data.
func errorFields(b []byte) (code, severity, msg string) {
	var sev, sevV []byte
	for len(b) > 0 && b[0] != 0 {
		k := b[0]
		v, rest, ok := cstring(b[1:])
		if !ok {
			break
		}
		switch k {
		case 'C':
			code = string(v)
		case 'M':
			msg = string(v)
		case 'S':
			sev = v
		case 'V':
			sevV = v
		}
		b = rest
	}
	if len(sevV) > 0 {
		return code, string(sevV), msg
	}
	return code, string(sev), msg
}

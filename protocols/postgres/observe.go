package pgproxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"unicode/utf8"

	"github.com/custos-pam/custos/recorder/event"
)

// Parameter redaction policies (config.TargetPostgres.Parameters).
const (
	paramsRecord = "record"
	paramsHash   = "hash"
	paramsOmit   = "omit"
)

// nullArg is how a NULL parameter or column value is recorded. Binary
// values are recorded as `\x` and hex; a text value that starts with a
// backslash gets a second one, so the three never collide.
const nullArg = `\N`

// renderValue returns the recorded form of a parameter or column value.
func renderValue(v []byte, binaryFormat bool) string {
	if binaryFormat || !utf8.Valid(v) {
		return `\x` + hex.EncodeToString(v)
	}
	if len(v) > 0 && v[0] == '\\' {
		return `\` + string(v)
	}
	return string(v)
}

// redactor applies a target's parameter policy.
type redactor struct {
	policy string
	key    []byte
}

// arg returns the recorded form of one bind parameter.
func (r *redactor) arg(v []byte, null, binaryFormat bool) string {
	if null {
		return nullArg
	}
	if r.policy == paramsHash {
		m := hmac.New(sha256.New, r.key)
		m.Write(v)
		return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
	}
	return renderValue(v, binaryFormat)
}

// clientObserver inspects client→server messages and records statements.
type clientObserver struct {
	s   *session
	red redactor
	// limit is the target's max_statement_bytes.
	limit int
	evs   []event.Event
	copy  int64 // CopyData bytes since the last CopyDone or CopyFail
	// dig hashes the CopyData bodies of a COPY FROM STDIN.
	dig digest
	// terminated is set when the client sent Terminate.
	terminated bool
	// mask, for a role with masking rules, learns which statement or
	// portal each result answers.
	mask *masker
	// names interns statement and portal names.
	names map[string]string
}

// Frontend message types the relay accepts.
func validFrontend(typ byte) bool {
	switch typ {
	case 'B', 'C', 'c', 'd', 'D', 'E', 'f', 'F', 'H', 'P', 'p', 'Q', 'S', 'X':
		return true
	}
	return false
}

func (o *clientObserver) wants(typ byte, _ int) bool {
	switch typ {
	case 'Q', 'P', 'B', 'E', 'F', 'f':
		return true
	case 'D', 'C':
		return o.mask != nil
	}
	return false
}

func (o *clientObserver) streamed(typ byte, n int) error {
	o.dig.cur = typ
	switch typ {
	case 'd':
		o.copy += int64(n)
	case 'c':
		o.evs = append(o.evs, event.Event{Kind: event.KindPGCopy, Op: "done", Text: "in", N: o.copy},
			event.Event{Kind: event.KindPGResult, Op: "copy_in", Text: o.dig.hex(), Bytes: o.dig.n})
		o.dig.reset()
		o.copy = 0
	case 'S':
		o.s.busy.Store(true)
		if o.mask != nil {
			return o.mask.client(typ, nil)
		}
	case 'X':
		o.terminated = true
	default:
		if !validFrontend(typ) {
			return fatalf(codeProtocolViolation, "invalid frontend message type %d", typ)
		}
	}
	return nil
}

// body hashes the body bytes of CopyData messages.
func (o *clientObserver) body(p []byte) {
	if o.dig.cur == 'd' {
		o.dig.write(p)
	}
}

func (o *clientObserver) message(typ byte, b []byte) error {
	n := len(o.evs)
	if err := o.decode(typ, b); err != nil {
		return err
	}
	if o.mask != nil {
		if err := o.mask.client(typ, b); err != nil {
			return err
		}
	}
	for i := n; i < len(o.evs); i++ {
		if note, err := oversized(&o.evs[i], messageName(typ), o.limit); err != nil {
			// The refused message's own event is replaced by the note:
			// nothing of it reaches the target.
			o.evs = append(o.evs[:i], *note)
			return err
		}
	}
	return nil
}

// messageName names a frontend message type in refusals.
func messageName(typ byte) string {
	switch typ {
	case 'Q':
		return "Query"
	case 'P':
		return "Parse"
	case 'B':
		return "Bind"
	case 'E':
		return "Execute"
	case 'F':
		return "FunctionCall"
	case 'f':
		return "CopyFail"
	}
	return string(typ)
}

// decode appends the event a wanted message records.
func (o *clientObserver) decode(typ byte, b []byte) error {
	switch typ {
	case 'Q':
		q, _, ok := cstring(b)
		if !ok {
			return malformed("Query")
		}
		o.s.busy.Store(true)
		o.evs = append(o.evs, event.Event{Kind: event.KindPGQuery, Text: string(q)})
	case 'P':
		name, rest, ok := cstring(b)
		if !ok {
			return malformed("Parse")
		}
		q, _, ok := cstring(rest)
		if !ok {
			return malformed("Parse")
		}
		o.evs = append(o.evs, event.Event{Kind: event.KindPGParse, Name: string(name), Text: string(q)})
	case 'B':
		e, err := o.bind(b)
		if err != nil {
			return err
		}
		o.evs = append(o.evs, e)
	case 'E':
		portal, rest, ok := cstring(b)
		if !ok || len(rest) < 4 {
			return malformed("Execute")
		}
		if o.names == nil {
			o.names = make(map[string]string)
		}
		o.evs = append(o.evs, event.Event{Kind: event.KindPGExecute, Name: intern(o.names, portal), N: int64(int32(binary.BigEndian.Uint32(rest)))})
	case 'F':
		e, err := o.functionCall(b)
		if err != nil {
			return err
		}
		o.s.busy.Store(true)
		o.evs = append(o.evs, e)
	case 'f':
		msg, _, ok := cstring(b)
		if !ok {
			return malformed("CopyFail")
		}
		o.evs = append(o.evs, event.Event{Kind: event.KindPGCopy, Op: "fail", Text: string(msg), N: o.copy})
		o.dig.reset()
		o.copy = 0
	}
	return nil
}

func malformed(what string) error {
	return fatalf(codeProtocolViolation, "invalid %s message", what)
}

// formats reads an int16 count of format codes and the codes.
func formats(b []byte) (fmts []byte, rest []byte, ok bool) {
	if len(b) < 2 {
		return nil, nil, false
	}
	n := int(binary.BigEndian.Uint16(b))
	if n > 0xffff/2 || len(b) < 2+2*n {
		return nil, nil, false
	}
	return b[2 : 2+2*n], b[2+2*n:], true
}

// binaryAt reports whether value i uses the binary format, given the raw
// int16 format codes (none: all text; one: applies to all).
func binaryAt(fmts []byte, i int) bool {
	switch len(fmts) / 2 {
	case 0:
		return false
	case 1:
		return binary.BigEndian.Uint16(fmts) == 1
	default:
		if 2*i+1 >= len(fmts) {
			return false
		}
		return binary.BigEndian.Uint16(fmts[2*i:]) == 1
	}
}

// values reads an int16 count of length-prefixed values and renders each
// through the redactor.
func (o *clientObserver) values(b []byte, fmts []byte) (args []string, n int, rest []byte, ok bool) {
	if len(b) < 2 {
		return nil, 0, nil, false
	}
	n = int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if o.red.policy != paramsOmit && n > 0 {
		args = make([]string, 0, min(n, len(b)/4+1))
	}
	for i := range n {
		if len(b) < 4 {
			return nil, 0, nil, false
		}
		l := int32(binary.BigEndian.Uint32(b))
		b = b[4:]
		var v []byte
		null := l < 0
		if !null {
			if int(l) > len(b) {
				return nil, 0, nil, false
			}
			v, b = b[:l], b[l:]
		}
		if o.red.policy != paramsOmit {
			args = append(args, o.red.arg(v, null, binaryAt(fmts, i)))
		}
	}
	return args, n, b, true
}

// bind decodes a Bind message: portal, statement, parameter formats,
// parameters, result formats.
func (o *clientObserver) bind(b []byte) (event.Event, error) {
	portal, rest, ok := cstring(b)
	if !ok {
		return event.Event{}, malformed("Bind")
	}
	stmt, rest, ok := cstring(rest)
	if !ok {
		return event.Event{}, malformed("Bind")
	}
	fmts, rest, ok := formats(rest)
	if !ok {
		return event.Event{}, malformed("Bind")
	}
	args, n, rest, ok := o.values(rest, fmts)
	if !ok {
		return event.Event{}, malformed("Bind")
	}
	if _, _, ok := formats(rest); !ok {
		return event.Event{}, malformed("Bind")
	}
	if o.names == nil {
		o.names = make(map[string]string)
	}
	return event.Event{Kind: event.KindPGBind, Name: intern(o.names, portal), Text: intern(o.names, stmt), Args: args, N: int64(n)}, nil
}

// functionCall decodes a FunctionCall (fast-path) message. It is recorded
// as a pg_query event with Op "function_call", the function OID as Name and
// the arguments, redacted, as Args.
func (o *clientObserver) functionCall(b []byte) (event.Event, error) {
	if len(b) < 4 {
		return event.Event{}, malformed("FunctionCall")
	}
	oid := binary.BigEndian.Uint32(b)
	fmts, rest, ok := formats(b[4:])
	if !ok {
		return event.Event{}, malformed("FunctionCall")
	}
	args, n, rest, ok := o.values(rest, fmts)
	if !ok || len(rest) < 2 {
		return event.Event{}, malformed("FunctionCall")
	}
	return event.Event{Kind: event.KindPGQuery, Op: "function_call", Name: strconv.FormatUint(uint64(oid), 10), Args: args, N: int64(n)}, nil
}

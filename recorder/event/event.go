package event

import (
	"encoding/binary"
	"time"
)

// Event is one recorded occurrence. Which fields a kind uses is fixed by the
// format (docs/recording-format.md); unused fields stay zero and cost
// nothing in the encoding.
type Event struct {
	Kind Kind
	// Offset is the time since the session started. Offsets never
	// decrease within a recording.
	Offset time.Duration
	// Channel is the SSH channel number; 0 for PostgreSQL and lifecycle
	// events.
	Channel uint32
	// Data holds terminal or stream bytes (output, stderr, input).
	Data []byte
	// Op is the kind's sub-type: an SSH channel or request type, a file
	// operation, a COPY direction, a transaction boundary, a SQLSTATE, an
	// end state or a note topic.
	Op string
	// Name is a secondary identifier: a statement or portal name, an
	// environment variable or signal name, a terminal type, an error
	// severity, or who ended the session.
	Name string
	// Text is the main text: a command, subsystem, destination address,
	// path, SQL, command tag, error message or reason.
	Text string
	// Args are bind parameters (already redacted by the proxy), recorded
	// row values, or a second path (rename target).
	Args []string
	// N is a number: an exit status, a row count or limit, a byte count,
	// a port, or COPY columns.
	N int64
	// Bytes is a byte count (pg_result of a COPY). Added after the first
	// release: older recordings never carry it and decode it as 0.
	Bytes int64
	// Cols and Rows are a terminal size (resize, pty-req).
	Cols, Rows uint32
	// Denied is set when the broker refused the request.
	Denied bool
	// Truncated is set when the writer cut a field to MaxFieldLen.
	Truncated bool
}

// MaxFieldLen bounds one encoded field. Writers cut longer text fields and
// set Truncated; longer Data is split across events.
const MaxFieldLen = 1 << 20

// Field numbers of the encoding. Never renumber one.
const (
	fieldChannel   = 1
	fieldData      = 2
	fieldOp        = 3
	fieldName      = 4
	fieldText      = 5
	fieldArg       = 6
	fieldN         = 7
	fieldCols      = 8
	fieldRows      = 9
	fieldDenied    = 10
	fieldTruncated = 11
	fieldBytes     = 12
)

// Wire types: a field key is field<<3 | wire type.
const (
	wireVarint = 0
	wireBytes  = 2
)

// Append appends e's encoding to buf: a uvarint body length, then the body
// (kind byte, uvarint offset in nanoseconds, then the non-zero fields).
// Fields longer than MaxFieldLen are cut and the event marked Truncated. It
// does not allocate when buf has room.
func Append(buf []byte, e *Event) []byte {
	start := len(buf)
	// Reserve the largest length prefix a body can need; move the body
	// back afterwards if the length is shorter.
	buf = append(buf, 0, 0, 0, 0, 0)
	body := len(buf)
	buf = append(buf, byte(e.Kind))
	off := e.Offset
	if off < 0 {
		off = 0
	}
	buf = binary.AppendUvarint(buf, uint64(off))
	truncated := e.Truncated
	if e.Channel != 0 {
		buf = appendVarint(buf, fieldChannel, uint64(e.Channel))
	}
	if len(e.Data) > 0 {
		d := e.Data
		if len(d) > MaxFieldLen {
			d, truncated = d[:MaxFieldLen], true
		}
		buf = appendBytesField(buf, fieldData, d)
	}
	buf, truncated = appendString(buf, fieldOp, e.Op, truncated)
	buf, truncated = appendString(buf, fieldName, e.Name, truncated)
	buf, truncated = appendString(buf, fieldText, e.Text, truncated)
	for _, a := range e.Args {
		buf = binary.AppendUvarint(buf, fieldArg<<3|wireBytes)
		if len(a) > MaxFieldLen {
			a, truncated = a[:MaxFieldLen], true
		}
		buf = binary.AppendUvarint(buf, uint64(len(a)))
		buf = append(buf, a...)
	}
	if e.N != 0 {
		buf = appendVarint(buf, fieldN, uint64(e.N<<1)^uint64(e.N>>63))
	}
	if e.Cols != 0 {
		buf = appendVarint(buf, fieldCols, uint64(e.Cols))
	}
	if e.Rows != 0 {
		buf = appendVarint(buf, fieldRows, uint64(e.Rows))
	}
	if e.Denied {
		buf = appendVarint(buf, fieldDenied, 1)
	}
	if truncated {
		buf = appendVarint(buf, fieldTruncated, 1)
	}
	if e.Bytes != 0 {
		buf = appendVarint(buf, fieldBytes, uint64(e.Bytes<<1)^uint64(e.Bytes>>63))
	}
	return finish(buf, start, body)
}

// AppendData appends a terminal-data event without building an Event. p
// must be at most MaxFieldLen bytes. The data is copied once: the body's
// length is known up front, so nothing is moved afterwards.
func AppendData(buf []byte, k Kind, off time.Duration, ch uint32, p []byte) []byte {
	if off < 0 {
		off = 0
	}
	n := 1 + uvarintLen(uint64(off))
	if ch != 0 {
		n += 1 + uvarintLen(uint64(ch))
	}
	if len(p) > 0 {
		n += 1 + uvarintLen(uint64(len(p))) + len(p)
	}
	buf = binary.AppendUvarint(buf, uint64(n))
	buf = append(buf, byte(k))
	buf = binary.AppendUvarint(buf, uint64(off))
	if ch != 0 {
		buf = appendVarint(buf, fieldChannel, uint64(ch))
	}
	if len(p) > 0 {
		buf = appendBytesField(buf, fieldData, p)
	}
	return buf
}

// uvarintLen is the length of v's uvarint encoding.
func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// finish writes the body length in front of the body at buf[body:] and
// closes the gap left by the reserved prefix.
func finish(buf []byte, start, body int) []byte {
	n := len(buf) - body
	var pre [binary.MaxVarintLen64]byte
	pl := binary.PutUvarint(pre[:], uint64(n))
	copy(buf[start:], pre[:pl])
	if gap := body - start - pl; gap > 0 {
		copy(buf[start+pl:], buf[body:])
		buf = buf[:len(buf)-gap]
	}
	return buf
}

func appendVarint(buf []byte, field int, v uint64) []byte {
	buf = binary.AppendUvarint(buf, uint64(field<<3|wireVarint))
	return binary.AppendUvarint(buf, v)
}

func appendBytesField(buf []byte, field int, p []byte) []byte {
	buf = binary.AppendUvarint(buf, uint64(field<<3|wireBytes))
	buf = binary.AppendUvarint(buf, uint64(len(p)))
	return append(buf, p...)
}

func appendString(buf []byte, field int, s string, truncated bool) ([]byte, bool) {
	if s == "" {
		return buf, truncated
	}
	if len(s) > MaxFieldLen {
		s, truncated = s[:MaxFieldLen], true
	}
	buf = binary.AppendUvarint(buf, uint64(field<<3|wireBytes))
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...), truncated
}

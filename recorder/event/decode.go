package event

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed event")

// Decoder reads the events of a decrypted chunk. It never trusts a length:
// every read is bounded by the input.
type Decoder struct {
	buf  []byte
	off  int
	err  error
	last time.Duration
}

// NewDecoder returns a decoder over the encoded events in b.
func NewDecoder(b []byte) *Decoder { return &Decoder{buf: b} }

// Next decodes the next event into e, reporting false at the end of the
// input or on error (see Err). Data and Args in e are copies, so e stays
// valid after the decoder's input is reused.
func (d *Decoder) Next(e *Event) bool {
	if d.err != nil || d.off >= len(d.buf) {
		return false
	}
	n, l := binary.Uvarint(d.buf[d.off:])
	if l <= 0 {
		d.err = fmt.Errorf("%w at byte %d: bad record length", ErrMalformed, d.off)
		return false
	}
	if n == 0 || n > uint64(len(d.buf)-d.off-l) {
		d.err = fmt.Errorf("%w at byte %d: record length %d out of range", ErrMalformed, d.off, n)
		return false
	}
	body := d.buf[d.off+l : d.off+l+int(n)]
	if err := decodeBody(body, e); err != nil {
		d.err = fmt.Errorf("%w at byte %d: %v", ErrMalformed, d.off, err)
		return false
	}
	if e.Offset < d.last {
		d.err = fmt.Errorf("%w at byte %d: offset goes backwards", ErrMalformed, d.off)
		return false
	}
	d.last = e.Offset
	d.off += l + int(n)
	return true
}

// Err returns the first decoding error.
func (d *Decoder) Err() error { return d.err }

// Offset returns how many input bytes have been consumed.
func (d *Decoder) Offset() int { return d.off }

func decodeBody(b []byte, e *Event) error {
	*e = Event{Kind: Kind(b[0])}
	b = b[1:]
	off, l := binary.Uvarint(b)
	if l <= 0 || off > 1<<62 {
		return errors.New("bad offset")
	}
	e.Offset = time.Duration(off)
	b = b[l:]
	for len(b) > 0 {
		key, l := binary.Uvarint(b)
		if l <= 0 {
			return errors.New("bad field key")
		}
		b = b[l:]
		field, wire := key>>3, key&7
		switch wire {
		case wireVarint:
			v, l := binary.Uvarint(b)
			if l <= 0 {
				return fmt.Errorf("field %d: bad varint", field)
			}
			b = b[l:]
			if err := setVarint(e, field, v); err != nil {
				return err
			}
		case wireBytes:
			n, l := binary.Uvarint(b)
			if l <= 0 || n > uint64(len(b)-l) {
				return fmt.Errorf("field %d: bad length", field)
			}
			p := b[l : l+int(n)]
			b = b[l+int(n):]
			setBytes(e, field, p)
		default:
			return fmt.Errorf("field %d: unknown wire type %d", field, wire)
		}
	}
	return nil
}

func setVarint(e *Event, field, v uint64) error {
	switch field {
	case fieldChannel, fieldCols, fieldRows:
		if v > 1<<32-1 {
			return fmt.Errorf("field %d: value out of range", field)
		}
		switch field {
		case fieldChannel:
			e.Channel = uint32(v)
		case fieldCols:
			e.Cols = uint32(v)
		default:
			e.Rows = uint32(v)
		}
	case fieldN:
		e.N = int64(v>>1) ^ -int64(v&1)
	case fieldDenied:
		e.Denied = v != 0
	case fieldTruncated:
		e.Truncated = v != 0
	case fieldBytes:
		e.Bytes = int64(v>>1) ^ -int64(v&1)
	}
	// Unknown varint fields are skipped: a newer writer may add them.
	return nil
}

func setBytes(e *Event, field uint64, p []byte) {
	switch field {
	case fieldData:
		e.Data = append([]byte(nil), p...)
	case fieldOp:
		e.Op = string(p)
	case fieldName:
		e.Name = string(p)
	case fieldText:
		e.Text = string(p)
	case fieldArg:
		e.Args = append(e.Args, string(p))
	}
	// Unknown length-delimited fields are skipped.
}

package masking

import (
	"encoding/binary"
	"errors"
)

// ErrMalformed is returned for a DataRow body that does not parse.
var ErrMalformed = errors.New("masking: malformed DataRow")

// Rewrite appends the DataRow body with every value rewritten by fields
// to dst and returns it. A row with more values than fields has the
// extra ones rewritten as Unresolved. body is not modified.
func (p *Policy) Rewrite(dst, body []byte, fields []Field) ([]byte, error) {
	if len(body) < 2 {
		return dst, ErrMalformed
	}
	n := int(binary.BigEndian.Uint16(body))
	dst = append(dst, body[:2]...)
	b := body[2:]
	for i := range n {
		if len(b) < 4 {
			return dst, ErrMalformed
		}
		l := int32(binary.BigEndian.Uint32(b))
		b = b[4:]
		if l < -1 || int(l) > len(b) {
			return dst, ErrMalformed
		}
		if l == -1 {
			dst = append(dst, 0xff, 0xff, 0xff, 0xff)
			continue
		}
		f := p.Unresolved()
		if i < len(fields) {
			f = fields[i]
		}
		at := len(dst)
		dst = append(dst, 0, 0, 0, 0)
		var null bool
		dst, null = p.apply(dst, f, b[:l])
		if null {
			binary.BigEndian.PutUint32(dst[at:], 0xffffffff)
		} else {
			binary.BigEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
		}
		b = b[l:]
	}
	if len(b) != 0 {
		return dst, ErrMalformed
	}
	return dst, nil
}

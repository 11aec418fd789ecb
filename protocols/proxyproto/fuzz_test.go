package proxyproto

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzRead feeds arbitrary connection starts to Read: it never panics,
// never reads past what it returns as the header (or the 6 bytes it hands
// back), and every header it accepts survives a version 2 round trip.
func FuzzRead(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.7 10.0.0.5 51000 6432\r\nrest"))
	f.Add([]byte("PROXY TCP6 2001:db8::7 2001:db8::1 51000 2222\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
	f.Add([]byte{0, 0, 0, 8, 4, 210, 22, 47})
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x07\x0a\x00\x00\x05\xc7\x38\x19\x20"))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		h, start, err := Read(r)
		used := len(in) - r.Len()
		if errors.Is(err, ErrNoHeader) {
			if used != prefixLen || !bytes.Equal(start, in[:prefixLen]) {
				t.Fatalf("no header: read %d bytes, handed back %q", used, start)
			}
			return
		}
		if err != nil {
			return
		}
		if used > maxV1 && h.Version == 1 || used > v2Fixed+MaxV2Body {
			t.Fatalf("a %d-byte version %d header was accepted", used, h.Version)
		}
		if h.Command == Local {
			return
		}
		b, err := AppendV2(nil, h)
		if err != nil {
			t.Fatalf("accepted header %+v does not encode: %v", h, err)
		}
		back, _, err := Read(io.MultiReader(bytes.NewReader(b)))
		back.Version = h.Version
		if err != nil || back != h {
			t.Fatalf("round trip of %+v gave %+v, %v", h, back, err)
		}
	})
}

package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
)

func v2(t *testing.T, h Header) []byte {
	t.Helper()
	b, err := AppendV2(nil, h)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withTLV is a version 2 header with an extension (a unique ID) after the
// addresses, as load balancers send.
func withTLV(t *testing.T, h Header) []byte {
	b := v2(t, h)
	tlv := []byte{0x05, 0x00, 0x03, 'a', 'b', 'c'}
	n := binary.BigEndian.Uint16(b[14:16]) + uint16(len(tlv))
	binary.BigEndian.PutUint16(b[14:16], n)
	return append(b, tlv...)
}

func TestRead(t *testing.T) {
	ap := netip.MustParseAddrPort
	four := Header{Version: 2, Source: ap("192.0.2.7:51000"), Destination: ap("10.0.0.5:6432")}
	six := Header{Version: 2, Source: ap("[2001:db8::7]:51000"), Destination: ap("[2001:db8::1]:2222")}
	long := "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
	for _, tc := range []struct {
		name string
		in   []byte
		want Header
		err  error // nil, ErrNoHeader, ErrMalformed or io.ErrUnexpectedEOF
	}{
		{"v1 tcp4", []byte("PROXY TCP4 192.0.2.7 10.0.0.5 51000 6432\r\n"), Header{Version: 1, Source: ap("192.0.2.7:51000"), Destination: ap("10.0.0.5:6432")}, nil},
		{"v1 tcp6", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 51000 2222\r\n"), Header{Version: 1, Source: six.Source, Destination: six.Destination}, nil},
		{"v1 longest", []byte(long), Header{Version: 1, Source: ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"), Destination: ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")}, nil},
		{"v1 unknown", []byte("PROXY UNKNOWN\r\n"), Header{Version: 1, Command: Local}, nil},
		{"v1 unknown with addresses", []byte("PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n"), Header{Version: 1, Command: Local}, nil},
		{"v2 inet", v2(t, four), four, nil},
		{"v2 inet6", v2(t, six), six, nil},
		{"v2 with extensions", withTLV(t, four), four, nil},
		{"v2 local", v2(t, Header{Command: Local}), Header{Version: 2, Command: Local}, nil},

		{"no header (psql SSLRequest)", []byte{0, 0, 0, 8, 4, 210, 22, 47}, Header{}, ErrNoHeader},
		{"no header (ssh)", []byte("SSH-2.0-OpenSSH_9.2\r\n"), Header{}, ErrNoHeader},
		{"no header (lower case)", []byte("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), Header{}, ErrNoHeader},
		{"empty", nil, Header{}, io.EOF},
		{"v1 truncated", []byte("PROXY TCP4 192.0.2.7 10.0"), Header{}, io.ErrUnexpectedEOF},
		{"v1 too long", []byte("PROXY TCP4 " + strings.Repeat("1", 200) + "\r\n"), Header{}, ErrMalformed},
		{"v1 no CR", []byte("PROXY TCP4 192.0.2.7 10.0.0.5 51000 6432\n"), Header{}, ErrMalformed},
		{"v1 tcp4 with v6 address", []byte("PROXY TCP4 2001:db8::7 10.0.0.5 51000 6432\r\n"), Header{}, ErrMalformed},
		{"v1 tcp6 with v4 address", []byte("PROXY TCP6 192.0.2.7 10.0.0.5 51000 6432\r\n"), Header{}, ErrMalformed},
		{"v1 zone", []byte("PROXY TCP6 fe80::1%eth0 fe80::2 1 2\r\n"), Header{}, ErrMalformed},
		{"v1 port too big", []byte("PROXY TCP4 192.0.2.7 10.0.0.5 65536 6432\r\n"), Header{}, ErrMalformed},
		{"v1 signed port", []byte("PROXY TCP4 192.0.2.7 10.0.0.5 +1 6432\r\n"), Header{}, ErrMalformed},
		{"v1 leading zero port", []byte("PROXY TCP4 192.0.2.7 10.0.0.5 01 6432\r\n"), Header{}, ErrMalformed},
		{"v1 extra field", []byte("PROXY TCP4 192.0.2.7 10.0.0.5 1 2 3\r\n"), Header{}, ErrMalformed},
		{"v1 double space", []byte("PROXY TCP4  192.0.2.7 10.0.0.5 1 2\r\n"), Header{}, ErrMalformed},
		{"v1 udp", []byte("PROXY UDP4 192.0.2.7 10.0.0.5 1 2\r\n"), Header{}, ErrMalformed},
		{"v1 hostname", []byte("PROXY TCP4 evil.example 10.0.0.5 1 2\r\n"), Header{}, ErrMalformed},
		{"v2 truncated signature", v2(t, four)[:10], Header{}, io.ErrUnexpectedEOF},
		{"v2 truncated body", v2(t, four)[:20], Header{}, io.ErrUnexpectedEOF},
		{"v2 bad signature", func() []byte { b := v2(t, four); b[11] = 'X'; return b }(), Header{}, ErrMalformed},
		{"v2 version 1", func() []byte { b := v2(t, four); b[12] = 0x11; return b }(), Header{}, ErrMalformed},
		{"v2 unknown command", func() []byte { b := v2(t, four); b[12] = 0x22; return b }(), Header{}, ErrMalformed},
		{"v2 udp", func() []byte { b := v2(t, four); b[13] = 0x12; return b }(), Header{}, ErrMalformed},
		{"v2 unix", func() []byte { b := v2(t, four); b[13] = 0x31; return b }(), Header{}, ErrMalformed},
		{"v2 unspec proxy", func() []byte { b := v2(t, four); b[13] = 0x01; return b }(), Header{}, ErrMalformed},
		{"v2 short addresses", func() []byte { b := v2(t, four); b[13] = 0x21; return b }(), Header{}, ErrMalformed},
		{"v2 over the size bound", func() []byte {
			b := v2(t, four)[:16]
			binary.BigEndian.PutUint16(b[14:], MaxV2Body+1)
			return append(b, make([]byte, MaxV2Body+1)...)
		}(), Header{}, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Data after the header must stay unread.
			after := []byte("SSH-2.0-client\r\n")
			r := bytes.NewReader(append(append([]byte(nil), tc.in...), after...))
			if tc.err == io.ErrUnexpectedEOF || tc.err == io.EOF {
				r = bytes.NewReader(tc.in)
			}
			h, start, err := Read(r)
			if tc.err == nil {
				if err != nil {
					t.Fatalf("Read: %v", err)
				}
				if h != tc.want {
					t.Fatalf("header %+v, want %+v", h, tc.want)
				}
				rest, _ := io.ReadAll(r)
				if !bytes.Equal(rest, after) {
					t.Fatalf("after the header %q is left, want %q", rest, after)
				}
				return
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("Read error %v, want %v", err, tc.err)
			}
			if errors.Is(err, ErrNoHeader) && !bytes.Equal(start, tc.in[:prefixLen]) {
				t.Fatalf("bytes read before ErrNoHeader %q, want %q", start, tc.in[:prefixLen])
			}
		})
	}
}

func TestAppendV2RoundTrip(t *testing.T) {
	h := Header{Version: 2, Source: netip.MustParseAddrPort("203.0.113.9:1234"), Destination: netip.MustParseAddrPort("198.51.100.1:443")}
	got, _, err := Read(bytes.NewReader(v2(t, h)))
	if err != nil || got != h {
		t.Fatalf("round trip %+v, %v; want %+v", got, err, h)
	}
	if _, err := AppendV2(nil, Header{Source: h.Source, Destination: netip.MustParseAddrPort("[::1]:1")}); err == nil {
		t.Fatal("mixed families encoded")
	}
}

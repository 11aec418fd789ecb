package proxyproto

import (
	"github.com/custos-pam/custos/broker/proxytrust"

	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// accept dials a loopback listener from local (an address in 127.0.0.0/8),
// writes send, and runs Policy.Accept on the accepted end.
func accept(t *testing.T, p *Policy, local string, send []byte) (net.Conn, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(send); err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return p.Accept(s)
}

func TestPolicyAccept(t *testing.T) {
	trusted, err := proxytrust.Parse([]string{"127.0.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	p := &Policy{Trusted: trusted, Timeout: time.Second}
	hdr, err := AppendV2(nil, Header{Source: netip.MustParseAddrPort("203.0.113.9:40000"), Destination: netip.MustParseAddrPort("127.0.0.1:6432")})
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("SSH-2.0-client\r\n")
	for _, tc := range []struct {
		name, from string
		send       []byte
		wantAddr   string // "" when refused
		untrusted  bool   // refused with ErrUntrustedHeader
	}{
		{"trusted proxy, v2 header", "127.0.0.2", append(hdr, data...), "203.0.113.9:40000", false},
		{"trusted proxy, v1 header", "127.0.0.2", append([]byte("PROXY TCP4 198.51.100.4 127.0.0.1 41000 2222\r\n"), data...), "198.51.100.4:41000", false},
		{"trusted proxy, LOCAL keeps the proxy's address", "127.0.0.2", append([]byte("PROXY UNKNOWN\r\n"), data...), "127.0.0.2", false},
		{"trusted proxy without a header", "127.0.0.2", data, "", false},
		{"trusted proxy, malformed header", "127.0.0.2", []byte("PROXY TCP4 1.2.3.4\r\n"), "", false},
		{"trusted proxy, truncated header", "127.0.0.2", hdr[:20], "", false},
		{"untrusted client, no header", "127.0.0.3", data, "127.0.0.3", false},
		{"untrusted client forging a v2 header", "127.0.0.3", append(hdr, data...), "", true},
		{"untrusted client forging a v1 header", "127.0.0.3", []byte("PROXY TCP4 198.51.100.4 127.0.0.1 41000 2222\r\n"), "", true},
		{"untrusted client forging a malformed header", "127.0.0.3", []byte("PROXY garbage\r\n"), "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := accept(t, p, tc.from, tc.send)
			if tc.wantAddr == "" {
				var ref *Refusal
				if err == nil || !errors.As(err, &ref) {
					t.Fatalf("accepted (%v), want a refusal", err)
				}
				if got := errors.Is(err, ErrUntrustedHeader); got != tc.untrusted {
					t.Fatalf("refusal %v: untrusted header %v, want %v", err, got, tc.untrusted)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			host := c.RemoteAddr().String()
			if h, _, err := net.SplitHostPort(host); err == nil && tc.wantAddr == h {
				host = h
			}
			if host != tc.wantAddr {
				t.Fatalf("RemoteAddr %s, want %s", c.RemoteAddr(), tc.wantAddr)
			}
			got := make([]byte, len(data))
			if _, err := io.ReadFull(c, got); err != nil || string(got) != string(data) {
				t.Fatalf("data after the header %q (%v), want %q", got, err, data)
			}
		})
	}
}

func TestPolicyAcceptDeadline(t *testing.T) {
	trusted, _ := proxytrust.Parse([]string{"127.0.0.2"})
	p := &Policy{Trusted: trusted, Timeout: 200 * time.Millisecond}
	// A trusted proxy that sends half a header and stalls is cut.
	_, err := accept(t, p, "127.0.0.2", []byte("PROXY TCP4 1.2"))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("stalled header: %v, want a timeout", err)
	}
	var nilPolicy *Policy
	c, err := accept(t, nilPolicy, "127.0.0.3", []byte("PROXY TCP4 198.51.100.4 127.0.0.1 41000 2222\r\n"))
	if err != nil || c.RemoteAddr().(*net.TCPAddr).IP.String() != "127.0.0.3" {
		t.Fatalf("nil policy: %v, %v", c, err)
	}
}

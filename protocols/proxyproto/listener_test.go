package proxyproto

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/proxytrust"
)

// TestListenerHTTP serves net/http through a Listener: a trusted proxy's
// header names the request's RemoteAddr; the same header from an
// untrusted client gets no answer.
func TestListenerHTTP(t *testing.T) {
	for _, tc := range []struct {
		name, trust, want string
	}{
		{"trusted proxy", "127.0.0.1", "203.0.113.9:40000"},
		{"untrusted client", "127.0.0.2", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			trusted, err := proxytrust.Parse([]string{tc.trust})
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, r.RemoteAddr)
			})}
			go srv.Serve(&Listener{Listener: ln, Policy: &Policy{Trusted: trusted, Timeout: time.Second}})
			t.Cleanup(func() { srv.Close() })

			hdr, err := AppendV2(nil, Header{Source: netip.MustParseAddrPort("203.0.113.9:40000"), Destination: netip.MustParseAddrPort("127.0.0.1:8443")})
			if err != nil {
				t.Fatal(err)
			}
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(append(hdr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"...)); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("an untrusted client's header got an answer: %s", resp.Status)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if strings.TrimSpace(string(body)) != tc.want {
				t.Fatalf("RemoteAddr %q, want %q", body, tc.want)
			}
		})
	}
}

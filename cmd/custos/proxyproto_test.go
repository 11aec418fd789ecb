package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-pam/custos/deploy/devstack"
	"github.com/custos-pam/custos/protocols/proxyproto"
)

// TestProxyProtocolHTTPBehindHAProxy runs `custos serve` with
// listen.http_proxy_protocol behind the real HAProxy in TCP mode
// (send-proxy-v2), as a balancer that passes HTTPS through does. Five
// failed sign-ins from one client lock out that client, not the other
// client behind the same balancer; a client connecting directly with a
// PROXY header of its own gets no answer.
func TestProxyProtocolHTTPBehindHAProxy(t *testing.T) {
	const lbSource = "127.0.0.9"
	dir := t.TempDir()
	port := devstack.FreePort(t)
	cfg := strings.Replace(fmt.Sprintf(e2eConfig, fmt.Sprintf("127.0.0.1:%d", port), filepath.Join(dir, "data"), "{driver: sqlite}"),
		"listen: {", `listen: {trusted_proxies: ["`+lbSource+`"], http_proxy_protocol: true, `, 1)
	b := &brokerProc{t: t, cfg: filepath.Join(dir, "custos.yaml"), url: fmt.Sprintf("http://127.0.0.1:%d", port), homes: map[string]string{}}
	if err := os.WriteFile(b.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// The readiness probe comes from 127.0.0.1, not a trusted proxy: it
	// is served without a header.
	b.start()
	t.Cleanup(func() { b.stop(syscall.SIGTERM) })
	lb := devstack.StartHAProxy(t, fmt.Sprintf("127.0.0.1:%d", port), lbSource)

	signIn := func(from, password string) int {
		t.Helper()
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext, DisableKeepAlives: true}}
		body := fmt.Sprintf(`{"user":"alice","password":%q}`, password)
		resp, err := c.Post("http://"+lb.Addr()+"/api/v1/login", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("sign-in through HAProxy: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 5 {
		if code := signIn("127.0.0.2", "wrong"); code != http.StatusUnauthorized {
			t.Fatalf("failure %d answered %d", i, code)
		}
	}
	if code := signIn("127.0.0.2", e2ePassword); code != http.StatusTooManyRequests {
		t.Fatalf("127.0.0.2 past its limit answered %d, want 429", code)
	}
	// alice's own limit is spent too; bob signs in from the other client
	// behind the same balancer, whose address has no failures.
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}}).DialContext}}
	resp, err := c.Post("http://"+lb.Addr()+"/api/v1/login", "application/json", strings.NewReader(`{"user":"bob","password":"`+e2ePassword+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("another client behind the same balancer answered %d, want 200", resp.StatusCode)
	}

	// Directly, with a header claiming to be 127.0.0.3.
	forged, err := proxyproto.AppendV2(nil, proxyproto.Header{
		Source: netip.MustParseAddrPort("127.0.0.3:40000"), Destination: netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", port))})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(context.Background(), "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write(append(forged, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"...))
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	reply, _ := io.ReadAll(conn)
	if bytes.Contains(reply, []byte("HTTP/1.1 200")) {
		t.Fatalf("a forged PROXY header from an untrusted client was served: %q", reply)
	}
}

package app

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// A client that keeps a connection open after its request and then
// sends nothing does not hold it (and a goroutine of the broker's) for
// good: the broker closes it once it has been idle for the idle timeout.
func TestHTTPServerClosesIdleConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }),
		200*time.Millisecond)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: broker\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Close {
		t.Fatal("the server closed a keep-alive connection right away; the test needs one kept open")
	}
	// Idle now: the server must close it well before this deadline.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = br.ReadByte()
	if !errors.Is(err, io.EOF) {
		t.Fatalf("idle keep-alive connection still open 5 s after its request (read: %v)", err)
	}
	if newHTTPServer(nil, httpIdleTimeout).IdleTimeout <= 0 {
		t.Fatal("the broker's HTTP server keeps idle connections forever")
	}
}

package devstack

import (
	"bufio"
	"io"
	"net"
	"testing"
)

// EchoServer starts a plain TCP service on loopback that answers each
// connection's first line with "echo:" + line (and nothing to a connection
// closed without a line), for port-forwarding tests. It stops with the
// test and returns its address.
func EchoServer(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if line, err := bufio.NewReader(c).ReadString('\n'); err == nil {
					io.WriteString(c, "echo:"+line)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

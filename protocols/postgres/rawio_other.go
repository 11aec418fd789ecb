//go:build !linux

package pgproxy

import "net"

// direct returns c: the direct system-call path is only implemented on
// Linux.
func direct(c net.Conn) net.Conn { return c }

package pgproxy

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"github.com/custos-pam/custos/protocols/proxyproto"
)

// directConn is a TCP connection whose Read and Write issue the read(2)
// and write(2) system calls without the Go runtime's blocking-syscall
// bookkeeping. The socket is non-blocking, so both calls return at once;
// waiting for readiness, deadlines and Close still go through the
// runtime's poller (syscall.RawConn). The bookkeeping it skips is costly
// for a relay: entering a syscall while every P is idle wakes the
// runtime's monitor thread, which on a lightly loaded proxy happened on
// every message and added a thread wake-up to each hop.
type directConn struct {
	*net.TCPConn
	rc syscall.RawConn
	// remote is the client's address when a load balancer's PROXY
	// header named it; nil means the socket's peer.
	remote net.Addr
	// pending are bytes read before (looking for a PROXY header) that
	// Read returns first.
	pending []byte
}

// direct wraps a TCP connection, also one accepted through a PROXY
// protocol policy (keeping its client address and the bytes it read);
// other connections are returned as they are.
func direct(c net.Conn) net.Conn {
	pc, viaProxy := c.(*proxyproto.Conn)
	inner := c
	if viaProxy {
		inner = pc.NetConn()
	}
	tc, ok := inner.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	d := &directConn{TCPConn: tc, rc: rc}
	if viaProxy {
		d.remote, d.pending = pc.RemoteAddr(), pc.Pending()
	}
	return d
}

// RemoteAddr is the client's address.
func (c *directConn) RemoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.TCPConn.RemoteAddr()
}

func (c *directConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	var n int
	var errno syscall.Errno
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false
			}
			n, errno = int(r), e
			return true
		}
	})
	if err != nil {
		return 0, c.opError("read", err)
	}
	if errno != 0 {
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (c *directConn) Write(p []byte) (int, error) {
	var n int
	var errno syscall.Errno
	err := c.rc.Write(func(fd uintptr) bool {
		for n < len(p) {
			r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[n])), uintptr(len(p)-n))
			switch e {
			case 0:
				n += int(r)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false
			default:
				errno = e
				return true
			}
		}
		return true
	})
	if err != nil {
		return n, c.opError("write", err)
	}
	if errno != 0 {
		return n, c.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

func (c *directConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

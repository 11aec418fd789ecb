package pgproxy

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
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
}

// direct wraps a TCP connection; other connections are returned as they
// are.
func direct(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &directConn{TCPConn: tc, rc: rc}
}

func (c *directConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
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

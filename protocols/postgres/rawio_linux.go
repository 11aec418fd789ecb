package pgproxy

import (
	"io"
	"net"
	"os"
	"sync"
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

	// The calls handed to the RawConn are made once, with their
	// arguments and results in these fields, so a Read or Write does not
	// allocate a closure. rmu and wmu keep concurrent callers apart.
	rmu, wmu   sync.Mutex
	rd, wr     func(fd uintptr) bool
	rp, wp     []byte
	rn, wn     int
	rerr, werr syscall.Errno
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
	d.rd, d.wr = d.read, d.write
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
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	c.rp, c.rn, c.rerr = p, 0, 0
	err := c.rc.Read(c.rd)
	n, errno := c.rn, c.rerr
	c.rp = nil
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

// read is the RawConn call behind Read: false asks the poller to wait.
func (c *directConn) read(fd uintptr) bool {
	p := c.rp
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.rn, c.rerr = int(r), e
		return true
	}
}

func (c *directConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wp, c.wn, c.werr = p, 0, 0
	err := c.rc.Write(c.wr)
	n, errno := c.wn, c.werr
	c.wp = nil
	if err != nil {
		return n, c.opError("write", err)
	}
	if errno != 0 {
		return n, c.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

// write is the RawConn call behind Write: false asks the poller to wait.
func (c *directConn) write(fd uintptr) bool {
	p := c.wp
	for c.wn < len(p) {
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[c.wn])), uintptr(len(p)-c.wn))
		switch e {
		case 0:
			c.wn += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werr = e
			return true
		}
	}
	return true
}

func (c *directConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

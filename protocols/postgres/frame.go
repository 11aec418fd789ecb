package pgproxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// headerLen is the length of a v3 message header: a type byte and a
// big-endian int32 length that counts itself but not the type.
const headerLen = 5

// frameHandler inspects the messages of one direction. Its methods run on
// the relay's hot path and must not allocate for streamed messages.
type frameHandler interface {
	// wants reports whether the message of type typ with an n-byte body
	// must be seen whole (decoded) rather than streamed through.
	wants(typ byte, n int) bool
	// message is called with the whole body of a wanted message. body is
	// only valid during the call.
	message(typ byte, body []byte) error
	// streamed is called once for each message that is streamed through,
	// before its body has been read.
	streamed(typ byte, n int) error
}

// bodySink is implemented by a frameHandler that also sees the body bytes
// of streamed messages (to hash them), chunk by chunk, in order, after
// streamed announced the message. p is only valid during the call.
type bodySink interface {
	body(p []byte)
}

// rewriter is implemented by a frameHandler that replaces what is
// forwarded: the copier writes its output for the messages of a read
// instead of the bytes it read, then resets it.
type rewriter interface {
	output() []byte
	reset()
}

// errFrameLength and errFrameTooLarge are wrapped by scanner errors.
var (
	errFrameLength   = errors.New("invalid message length")
	errFrameTooLarge = errors.New("message too large")
)

// scanner walks v3 messages in a byte stream that arrives in pieces. It
// keeps only the state of a message being streamed through, so any split of
// the stream yields the same calls to the handler.
type scanner struct {
	h frameHandler
	// sink is h when it is a bodySink.
	sink bodySink
	// maxStream bounds any message; maxDecode bounds messages the handler
	// wants whole (they are buffered).
	maxStream, maxDecode int
	// skip is how many body bytes of a streamed message are still to come.
	skip int
	// need is the total length (header and body) of the wanted message at
	// the start of the bytes scan could not consume, or 0.
	need int
}

// scan consumes complete messages from b (and the rest of a message being
// streamed) and returns how many bytes it consumed. It stops at a partial
// header or a partial wanted message, which the caller keeps and presents
// again with more bytes.
func (s *scanner) scan(b []byte) (int, error) {
	pos := 0
	s.need = 0
	if s.sink == nil {
		s.sink, _ = s.h.(bodySink)
	}
	for {
		if s.skip > 0 {
			k := min(s.skip, len(b)-pos)
			if s.sink != nil && k > 0 {
				s.sink.body(b[pos : pos+k])
			}
			pos += k
			s.skip -= k
			if s.skip > 0 {
				return pos, nil
			}
		}
		if len(b)-pos < headerLen {
			return pos, nil
		}
		typ := b[pos]
		l := int64(binary.BigEndian.Uint32(b[pos+1:]))
		if l < 4 || l > 1<<31-1 {
			return pos, fmt.Errorf("message type %q: %w %d", typ, errFrameLength, l)
		}
		n := int(l - 4)
		if n > s.maxStream {
			return pos, fmt.Errorf("message type %q: %w: %d bytes exceed %d", typ, errFrameTooLarge, n, s.maxStream)
		}
		if !s.h.wants(typ, n) {
			if err := s.h.streamed(typ, n); err != nil {
				return pos, err
			}
			pos += headerLen
			s.skip = n
			continue
		}
		if n > s.maxDecode {
			return pos, fmt.Errorf("message type %q: %w: %d bytes exceed %d", typ, errFrameTooLarge, n, s.maxDecode)
		}
		if len(b)-pos < headerLen+n {
			s.need = headerLen + n
			return pos, nil
		}
		if err := s.h.message(typ, b[pos+headerLen:pos+headerLen+n]); err != nil {
			return pos, err
		}
		pos += headerLen + n
	}
}

// writeError is a copier's failure to write to its destination, as
// opposed to reading from its source.
type writeError struct{ err error }

func (e *writeError) Error() string { return "write: " + e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// initialBuf is the size of the pooled buffer a copier reads into while
// bytes flow; larger wanted messages get a buffer of their own.
const initialBuf = 32 << 10

// idleBuf is the size of the buffer a copier keeps for itself and waits in
// while its source is quiet: a drained copier hands its pooled buffer back.
const idleBuf = 2 << 10

// relayBufs recycles the copiers' initialBuf buffers across sessions.
var relayBufs = sync.Pool{New: func() any { b := make([]byte, initialBuf); return &b }}

// copier relays one direction: it reads from src into its buffer, lets the
// scanner inspect the messages, and writes every complete message (and
// every streamed byte) to dst in one write per read.
type copier struct {
	src, dst net.Conn
	sc       scanner
	// buf is small, a pooled initialBuf buffer (pooled set) or one sized
	// for a large wanted message.
	buf    []byte
	small  []byte
	pooled *[]byte
	// buf[r:w] holds bytes read but not yet consumed by the scanner.
	r, w int
	// last is the size of the latest read.
	last int
	// flush is called after each read's messages are scanned and before
	// they are forwarded; nil means nothing to do.
	flush func() error
	// atBoundary is false while a streamed message is partly forwarded, so
	// the broker may not inject a message of its own.
	atBoundary bool
	// forwarded counts bytes written to dst.
	forwarded int64
	// touch, when set, is called with the bytes of every read (idle
	// timeout, relayed-bytes metric).
	touch func(n int)
	// rw is the handler when it rewrites what is forwarded.
	rw rewriter
}

func newCopier(src, dst net.Conn, h frameHandler, maxStream, maxDecode int) *copier {
	rw, _ := h.(rewriter)
	return &copier{
		src: src, dst: dst, rw: rw,
		sc:         scanner{h: h, maxStream: maxStream, maxDecode: maxDecode},
		small:      make([]byte, idleBuf),
		atBoundary: true,
	}
}

// run relays until src or dst fails or a handler refuses a message. It
// returns io.EOF when src closed cleanly at a message boundary.
func (c *copier) run() error {
	c.buf = c.small
	defer c.release()
	for {
		c.makeRoom()
		n, rerr := c.src.Read(c.buf[c.w:])
		c.last = n
		if n > 0 {
			if c.touch != nil {
				c.touch(n)
			}
			c.w += n
			k, serr := c.sc.scan(c.buf[c.r:c.w])
			// Record before forwarding: a recorder failure stops the
			// bytes it could not record.
			if c.flush != nil {
				if err := c.flush(); err != nil {
					return err
				}
			}
			if k > 0 {
				out := c.buf[c.r : c.r+k]
				if c.rw != nil {
					out = c.rw.output()
				}
				if len(out) > 0 {
					wn, werr := c.dst.Write(out)
					c.forwarded += int64(wn)
					if werr != nil {
						c.atBoundary = false
						return &writeError{werr}
					}
				}
				if c.rw != nil {
					c.rw.reset()
				}
				c.r += k
			}
			c.atBoundary = c.sc.skip == 0
			if serr != nil {
				return serr
			}
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) && (c.r != c.w || !c.atBoundary) {
				return io.ErrUnexpectedEOF
			}
			return rerr
		}
	}
}

// makeRoom makes sure the buffer has space to read into and can hold the
// wanted message the scanner is waiting for. A drained copier whose last
// read was short (its peer now waits for an answer) goes back to its small
// buffer; one that filled the small buffer takes a pooled one.
func (c *copier) makeRoom() {
	if c.r == c.w {
		c.r, c.w = 0, 0
		if c.last < idleBuf && len(c.buf) > idleBuf {
			c.release()
			c.buf = c.small
		}
	}
	need := max(c.sc.need, headerLen)
	if c.w < len(c.buf) && c.r+need <= len(c.buf) {
		return
	}
	if need > len(c.buf) || len(c.buf) == idleBuf {
		// Too small for the wanted message, or the small buffer filled:
		// bytes are flowing.
		size := max(need, min(2*len(c.buf), c.sc.maxDecode+headerLen))
		var nb []byte
		var bp *[]byte
		if size <= initialBuf {
			bp = relayBufs.Get().(*[]byte)
			nb = *bp
		} else {
			nb = make([]byte, size)
		}
		c.w = copy(nb, c.buf[c.r:c.w])
		c.r = 0
		c.release()
		c.buf, c.pooled = nb, bp
		return
	}
	c.w = copy(c.buf, c.buf[c.r:c.w])
	c.r = 0
}

// release hands a pooled buffer back, cleared: it held a session's bytes.
func (c *copier) release() {
	if c.pooled == nil {
		return
	}
	clear(*c.pooled)
	relayBufs.Put(c.pooled)
	c.pooled = nil
}

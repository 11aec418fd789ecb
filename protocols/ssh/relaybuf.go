package sshproxy

import "sync"

// Relay buffers are sized to need. x/crypto/ssh's channel Read returns
// what the channel has buffered, so a read's size says how busy the stream
// is: a read that fills the buffer means more is waiting, one that does not
// means the stream drained before the copier waits again. A copier reads
// into one of three sizes:
//
//   - small while the stream is quiet (keystrokes, prompts, an idle
//     session): a read of at most its size comes back to it;
//   - packet, one SSH packet's worth (x/crypto/ssh and OpenSSH send at
//     most 32 KiB per packet), after a read that drained a larger buffer:
//     a stream that keeps coming refills it at once, and one that stops
//     holds no more than this while it waits;
//   - large while a busy stream has more buffered than a packet, so it
//     moves many packets per read, write and recorded event.
//
// A full read steps up one size. Every step happens after the bytes read
// were recorded and written, so no byte is held back: a copier that waits
// has relayed everything it read. An idle session holds only its copiers'
// small buffers; one that streamed and stopped, a packet-sized one.
var relaySizes = [...]int{8 << 10, 32 << 10, 256 << 10}

var relayPools [len(relaySizes)]sync.Pool

func init() {
	for i, n := range relaySizes {
		relayPools[i].New = func() any { b := make([]byte, n); return &b }
	}
}

// relayBuf is one copier's read buffer. The zero value is ready; release
// it when the copier ends.
type relayBuf struct {
	b    *[]byte
	size int // index in relaySizes
}

// buf returns the buffer for the next read.
func (r *relayBuf) buf() []byte {
	if r.b == nil {
		r.b = relayPools[r.size].Get().(*[]byte)
	}
	return *r.b
}

// used picks the buffer for the next read after a read of n bytes into
// buf's slice, once those bytes were recorded and written: the slice must
// not be used after.
func (r *relayBuf) used(n int) {
	next := r.size
	switch {
	case n == len(*r.b) && r.size < len(relaySizes)-1:
		next = r.size + 1
	case n <= relaySizes[0]:
		next = 0
	case n < len(*r.b) && r.size == len(relaySizes)-1:
		next = 1
	}
	if next != r.size {
		relayPools[r.size].Put(r.b)
		r.b, r.size = nil, next
	}
}

// release returns the buffer to its pool.
func (r *relayBuf) release() {
	if r.b != nil {
		relayPools[r.size].Put(r.b)
		r.b = nil
	}
}

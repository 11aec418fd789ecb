package recorder

import "sync"

// bufPool recycles chunk buffers across a recorder's sessions, so a busy
// session does not allocate (and zero) a megabyte per chunk, while the
// garbage collector still reclaims the buffers of idle ones.
type bufPool struct {
	pool sync.Pool
	size int
}

func newBufPool(size int) *bufPool { return &bufPool{size: size} }

// get returns an empty buffer with at least the pool's capacity.
func (b *bufPool) get() []byte {
	if v, ok := b.pool.Get().(*[]byte); ok {
		return (*v)[:0]
	}
	return make([]byte, 0, b.size)
}

// put recycles buf unless it is too small, or far larger than usual (a
// chunk that ended with a very large event).
func (b *bufPool) put(buf []byte) {
	if cap(buf) < b.size || cap(buf) > 4*b.size {
		return
	}
	buf = buf[:0]
	b.pool.Put(&buf)
}

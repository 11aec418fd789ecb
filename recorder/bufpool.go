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

// smallChunk is the buffer an open chunk starts with: enough for a second
// of typing and terminal echo. A chunk outgrowing it moves to a full-size
// buffer, so a busy stream still fills chunk-size chunks in one buffer.
const smallChunk = 16 << 10

// chunkBufs hands out the buffers an open chunk's events are encoded into:
// small first, full size once the chunk outgrows the small one. An open
// chunk takes no buffer until its first event, and gives it to the sealer
// when it closes, so a session with nothing to record holds none.
type chunkBufs struct {
	small, full *bufPool
}

func newChunkBufs(full int) chunkBufs {
	return chunkBufs{small: newBufPool(smallChunk), full: newBufPool(full)}
}

// room returns cur, or a buffer holding cur's bytes, with room for need
// more bytes if a pooled buffer has it. A larger need is left to append.
func (c chunkBufs) room(cur []byte, need int) []byte {
	if cap(cur)-len(cur) >= need {
		return cur
	}
	if cap(cur) == 0 {
		if need <= c.small.size {
			return c.small.get()
		}
		return c.full.get()
	}
	if cap(cur) >= c.full.size {
		return cur // a full-size chunk about to close; append grows it
	}
	b := append(c.full.get(), cur...)
	c.put(cur)
	return b
}

// put recycles a buffer room handed out.
func (c chunkBufs) put(b []byte) {
	if cap(b) >= c.full.size {
		c.full.put(b)
		return
	}
	c.small.put(b)
}

package recorder

import (
	"bytes"
	"context"
	"testing"

	"github.com/custos-pam/custos/recorder/event"
)

// An open chunk takes a buffer sized to what it holds, and a session
// whose chunk has closed holds none: idle sessions cost no chunk buffer.
// The bytes recorded are the same either way.
func TestChunkBufferSizedToNeed(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	r := e.recorder()
	w, err := r.Start(ctx, testHeader("ses_bufs"))
	if err != nil {
		t.Fatal(err)
	}
	capNow := func() int {
		w.mu.Lock()
		defer w.mu.Unlock()
		return cap(w.cur)
	}
	if err := w.Output(1, []byte("alice@db:~$ ")); err != nil {
		t.Fatal(err)
	}
	if c := capNow(); c == 0 || c > smallChunk {
		t.Fatalf("open chunk of a prompt: buffer capacity %d, want 1..%d", c, smallChunk)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if c := capNow(); c != 0 {
		t.Fatalf("after its chunk closed, the session holds a %d-byte buffer", c)
	}
	big := bytes.Repeat([]byte("x"), 3*smallChunk)
	if err := w.Input(1, []byte("ls -l\r")); err != nil {
		t.Fatal(err)
	}
	if err := w.Output(1, big); err != nil {
		t.Fatal(err)
	}
	if c := capNow(); c < r.chunks.full.size {
		t.Fatalf("a chunk outgrowing the small buffer: capacity %d, want a full-size one (%d)", c, r.chunks.full.size)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	drain(t, r)
	var out []byte
	for _, ev := range readAll(t, r, "ses_bufs") {
		if ev.Kind == event.KindOutput {
			out = append(out, ev.Data...)
		}
	}
	if want := append([]byte("alice@db:~$ "), big...); !bytes.Equal(out, want) {
		t.Fatalf("recorded output %d bytes, want %d", len(out), len(want))
	}
}

func TestInFlightChunks(t *testing.T) {
	tests := []struct{ chunkSize, want int }{
		{4 << 10, maxInFlight},
		{1 << 20, 8},
		{defaultChunkSize, 2},
		{64 << 20, 2},
	}
	for _, tt := range tests {
		if got := inFlightChunks(tt.chunkSize); got != tt.want {
			t.Errorf("inFlightChunks(%d) = %d, want %d", tt.chunkSize, got, tt.want)
		}
	}
}

package pgproxy

import (
	"bytes"
	"io"
	"net"
	"testing"
)

// The writer to the client drops exactly the completions of the broker's
// own replacement messages, however the target's answers are split.
func TestBoundaryWriterDropsOwnCompletions(t *testing.T) {
	msg := func(typ byte, body ...byte) []byte { return appendMsg(nil, typ, body) }
	var stream, want []byte
	add := func(keep bool, m []byte) {
		stream = append(stream, m...)
		if keep {
			want = append(want, m...)
		}
	}
	add(true, msg('1'))                 // client's Parse
	add(true, msg('t', 0, 0))           // its Describe
	add(true, msg('n'))                 //
	add(false, msg('1'))                // broker's Parse
	add(false, msg('2'))                // broker's Bind
	add(true, msg('E', 'S', 'x', 0, 0)) // the error
	add(true, msg('Z', 'I'))
	add(true, msg('1')) // next batch: not dropped
	add(true, msg('2'))
	for split := 1; split <= len(stream); split++ {
		a, b := net.Pipe()
		w := &boundaryWriter{Conn: a}
		w.expect(false, nil)
		w.expect(true, nil)
		w.expect(true, nil)
		got := make(chan []byte, 1)
		go func() { all, _ := io.ReadAll(b); got <- all }()
		for i := 0; i < len(stream); i += split {
			n, err := w.Write(stream[i:min(i+split, len(stream))])
			if err != nil || n != min(split, len(stream)-i) {
				t.Fatalf("split %d: write %d, %v", split, n, err)
			}
		}
		a.Close()
		if g := <-got; !bytes.Equal(g, want) {
			t.Fatalf("split %d:\n got %q\nwant %q", split, g, want)
		}
	}
}

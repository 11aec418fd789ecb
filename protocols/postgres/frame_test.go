package pgproxy

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// traceHandler records the calls a scanner makes. Messages of the types in
// want are decoded.
type traceHandler struct {
	want  string
	calls []string
}

func (h *traceHandler) wants(typ byte, _ int) bool { return bytes.IndexByte([]byte(h.want), typ) >= 0 }
func (h *traceHandler) message(typ byte, body []byte) error {
	h.calls = append(h.calls, fmt.Sprintf("msg %c %q", typ, body))
	return nil
}
func (h *traceHandler) streamed(typ byte, n int) error {
	h.calls = append(h.calls, fmt.Sprintf("stream %c %d", typ, n))
	return nil
}

// encode concatenates encoded messages.
func encode(t testing.TB, msgs ...interface{ Encode([]byte) ([]byte, error) }) []byte {
	t.Helper()
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// scanAll feeds stream to a scanner in pieces as a copier does, keeping
// unconsumed bytes, and returns the trace.
func scanAll(stream []byte, pieces []int, want string) ([]string, int, error) {
	h := &traceHandler{want: want}
	sc := scanner{h: h, maxStream: 1 << 20, maxDecode: 1 << 20}
	var pending []byte
	consumed := 0
	for len(stream) > 0 {
		n := len(stream)
		if len(pieces) > 0 {
			n = min(pieces[0], n)
			pieces = pieces[1:]
		}
		pending = append(pending, stream[:n]...)
		stream = stream[n:]
		k, err := sc.scan(pending)
		consumed += k
		if err != nil {
			return h.calls, consumed, err
		}
		pending = append(pending[:0], pending[k:]...)
	}
	return h.calls, consumed, nil
}

func TestScannerGivesTheSameCallsForEverySplit(t *testing.T) {
	stream := encode(t,
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("a")}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("one")}},
		&pgproto3.DataRow{Values: [][]byte{bytes.Repeat([]byte("x"), 300)}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT 2")},
		&pgproto3.CopyData{Data: []byte("copy bytes")},
		&pgproto3.ErrorResponse{Severity: "ERROR", Code: "22012", Message: "division by zero"},
		&pgproto3.ReadyForQuery{TxStatus: 'I'},
	)
	whole, n, err := scanAll(stream, nil, "CEZ")
	if err != nil || n != len(stream) {
		t.Fatalf("whole stream: consumed %d of %d, %v", n, len(stream), err)
	}
	if len(whole) != 7 {
		t.Fatalf("calls = %q", whole)
	}
	for cut := 1; cut < len(stream); cut++ {
		got, n, err := scanAll(stream, []int{cut}, "CEZ")
		if err != nil || n != len(stream) || fmt.Sprint(got) != fmt.Sprint(whole) {
			t.Fatalf("split at %d: consumed %d, %v\n got %q\nwant %q", cut, n, err, got, whole)
		}
	}
	// Byte by byte.
	ones := make([]int, len(stream))
	for i := range ones {
		ones[i] = 1
	}
	if got, _, _ := scanAll(stream, ones, "CEZ"); fmt.Sprint(got) != fmt.Sprint(whole) {
		t.Fatalf("byte by byte:\n got %q\nwant %q", got, whole)
	}
}

func TestScannerRejectsBadFrames(t *testing.T) {
	tests := []struct {
		name   string
		stream []byte
		want   error
	}{
		{"length below 4", []byte{'Q', 0, 0, 0, 3}, errFrameLength},
		{"negative length", []byte{'Q', 0xff, 0xff, 0xff, 0xff}, errFrameLength},
		{"streamed too large", []byte{'d', 0, 0x20, 0, 5}, errFrameTooLarge},
		{"decoded too large", []byte{'Q', 0, 0, 0x10, 5}, errFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &traceHandler{want: "Q"}
			sc := scanner{h: h, maxStream: 1 << 20, maxDecode: 1 << 12}
			_, err := sc.scan(tt.stream)
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// selectResponse is a target's answer to a one-row SELECT.
func selectResponse(t testing.TB) []byte {
	return encode(t,
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("abalance"), DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("-4711")}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")},
		&pgproto3.ReadyForQuery{TxStatus: 'I'},
	)
}

func TestServerHotPathDoesNotAllocate(t *testing.T) {
	stream := bytes.Repeat(selectResponse(t), 100)
	rows := bytes.Repeat(encode(t, &pgproto3.DataRow{Values: [][]byte{[]byte("1"), []byte("some text"), nil}}), 1000)
	s := &session{}
	o := newServerObserver(s, 'I', false, 0, 0)
	sc := scanner{h: o, maxStream: maxServerMessage, maxDecode: defaultMaxMessage}
	for _, tt := range []struct {
		name   string
		stream []byte
	}{{"select responses", stream}, {"data rows", rows}} {
		sc.scan(tt.stream) // warm up: intern the tag, size the event slice
		o.evs = o.evs[:0]
		allocs := testing.AllocsPerRun(50, func() {
			if n, err := sc.scan(tt.stream); err != nil || n != len(tt.stream) {
				t.Fatalf("scan: %d, %v", n, err)
			}
			o.evs = o.evs[:0]
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per scan, want 0", tt.name, allocs)
		}
	}
}

func BenchmarkScanSelectResponse(b *testing.B) {
	stream := bytes.Repeat(selectResponse(b), 64)
	o := newServerObserver(&session{}, 'I', false, 0, 0)
	sc := scanner{h: o, maxStream: maxServerMessage, maxDecode: defaultMaxMessage}
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		sc.scan(stream)
		o.evs = o.evs[:0]
	}
}

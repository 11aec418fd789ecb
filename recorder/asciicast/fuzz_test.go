package asciicast

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzEncoder encodes arbitrary terminal output (what a target printed),
// split at arbitrary points, as an asciicast file: every line must be
// valid JSON of the v2 shape, times must not go backwards, and valid UTF-8
// output must come back byte for byte whatever the split.
func FuzzEncoder(f *testing.F) {
	f.Add([]byte("hello\r\n\x1b[1mbold\x1b[0m"), uint8(3), []byte("typed"))
	f.Add([]byte("a界b\xf0\x9f\x98\x80c"), uint8(2), []byte(""))
	f.Add([]byte("\xe7\x95"), uint8(1), []byte("\x95\xff"))
	f.Add([]byte("</script>\"\\\u2028"), uint8(7), []byte("\x00\x1b"))
	f.Fuzz(func(t *testing.T, out []byte, step uint8, in []byte) {
		var file bytes.Buffer
		e, err := NewEncoder(&file, Header{Width: 80, Height: 24})
		if err != nil {
			t.Fatal(err)
		}
		n := int(step%16) + 1
		for i := 0; i < len(out); i += n {
			at := time.Duration(i) * time.Millisecond
			if err := e.Output(at, out[i:min(i+n, len(out))]); err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				_ = e.Input(at, in)
				_ = e.Resize(at, 1000, 500)
				_ = e.Marker(at, string(in))
			}
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(&file)
		sc.Buffer(nil, 1<<20)
		if !sc.Scan() {
			t.Fatal("no header")
		}
		var h Header
		if err := json.Unmarshal(sc.Bytes(), &h); err != nil || h.Version != 2 {
			t.Fatalf("header %q: %v", sc.Text(), err)
		}
		var got strings.Builder
		last := -1.0
		for sc.Scan() {
			var ev []any
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || len(ev) != 3 {
				t.Fatalf("event line %q: %v", sc.Text(), err)
			}
			at, ok1 := ev[0].(float64)
			typ, ok2 := ev[1].(string)
			data, ok3 := ev[2].(string)
			if !ok1 || !ok2 || !ok3 || at < last {
				t.Fatalf("event line %q", sc.Text())
			}
			last = at
			if typ == TypeOutput {
				got.WriteString(data)
			}
		}
		if utf8.Valid(out) && got.String() != string(out) {
			t.Fatalf("output %q came back as %q", out, got.String())
		}
	})
}

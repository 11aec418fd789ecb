package asciicast

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func encode(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	e, err := NewEncoder(&buf, Header{Width: 100, Height: 30, Timestamp: 1700000000, Title: "alice@db", Env: map[string]string{"TERM": "xterm"}})
	if err != nil {
		t.Fatal(err)
	}
	ms := time.Millisecond
	steps := []error{
		e.Output(0, []byte("alice@db:~$ ")),
		e.Input(500*ms, []byte("ls\r")),
		e.Output(510*ms, []byte("ls\r\n<b>&\"quoted\"\t\x1b[1mbold\x1b[0m\r\n")),
		// "é" (c3 a9) and "€" (e2 82 ac) split across events.
		e.Output(600*ms, []byte("caf\xc3")),
		e.Output(601*ms, []byte("\xa9 \xe2\x82")),
		e.Output(602*ms, []byte("\xac\r\n")),
		e.Output(700*ms, []byte("bad \xff byte\r\n")),
		e.Resize(1500*ms, 120, 40),
		e.Marker(1600*ms, "exit"),
		e.Output(1500*ms, []byte("time never goes back")),
		e.Output(2*time.Second, []byte("\xe2")), // held, then flushed by Close
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestGolden(t *testing.T) {
	got := encode(t)
	path := filepath.Join("testdata", "session.cast")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("asciicast differs from %s:\n%s", path, got)
	}
}

// TestWellFormed checks the structure every asciicast v2 reader relies on:
// a header object with version 2 and a size, then [float, string, string]
// lines with non-decreasing times and valid UTF-8 text.
func TestWellFormed(t *testing.T) {
	sc := bufio.NewScanner(bytes.NewReader(encode(t)))
	sc.Scan()
	var h Header
	if err := json.Unmarshal(sc.Bytes(), &h); err != nil || h.Version != 2 || h.Width != 100 || h.Height != 30 {
		t.Fatalf("header %s: %v", sc.Bytes(), err)
	}
	var out string
	last := -1.0
	for sc.Scan() {
		var ev [3]any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %s: %v", sc.Bytes(), err)
		}
		ts, ok1 := ev[0].(float64)
		typ, ok2 := ev[1].(string)
		data, ok3 := ev[2].(string)
		if !ok1 || !ok2 || !ok3 || ts < last {
			t.Fatalf("bad event line %s", sc.Bytes())
		}
		last = ts
		if typ == TypeOutput {
			out += data
		}
	}
	for _, want := range []string{"café €\r\n", "bad \ufffd byte", "<b>&\"quoted\""} {
		if !bytes.Contains([]byte(out), []byte(want)) {
			t.Errorf("output lacks %q: %q", want, out)
		}
	}
}

package event

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

// sample returns one event of every kind, with the fields each kind uses.
func sample() []Event {
	return []Event{
		{Kind: KindStart},
		{Kind: KindSSHChannel, Offset: 1 * time.Millisecond, Channel: 1, Op: "session"},
		{Kind: KindSSHRequest, Offset: 2 * time.Millisecond, Channel: 1, Op: "pty-req", Name: "xterm-256color", Cols: 80, Rows: 24},
		{Kind: KindSSHRequest, Offset: 3 * time.Millisecond, Channel: 1, Op: "env", Name: "LANG", Text: "C.UTF-8"},
		{Kind: KindSSHRequest, Offset: 3 * time.Millisecond, Channel: 1, Op: "env", Name: "LD_PRELOAD", Text: "/tmp/x.so", Denied: true},
		{Kind: KindSSHRequest, Offset: 4 * time.Millisecond, Channel: 1, Op: "shell"},
		{Kind: KindOutput, Offset: 5 * time.Millisecond, Channel: 1, Data: []byte("$ ")},
		{Kind: KindInput, Offset: 900 * time.Millisecond, Channel: 1, Data: []byte("ls\r")},
		{Kind: KindStderr, Offset: 901 * time.Millisecond, Channel: 1, Data: []byte{0xff, 0xfe, 'x'}},
		{Kind: KindResize, Offset: 2 * time.Second, Channel: 1, Cols: 132, Rows: 43},
		{Kind: KindSSHChannel, Offset: 3 * time.Second, Channel: 2, Op: "direct-tcpip", Text: "10.0.0.5:5432", Denied: true},
		{Kind: KindSSHRequest, Offset: 4 * time.Second, Channel: 1, Op: "exit-status", N: 0},
		{Kind: KindSSHRequest, Offset: 4 * time.Second, Channel: 3, Op: "exit-status", N: 127},
		{Kind: KindFile, Offset: 5 * time.Second, Channel: 3, Op: "rename", Text: "/srv/a.txt", Args: []string{"/srv/b.txt"}},
		{Kind: KindFile, Offset: 5 * time.Second, Channel: 3, Op: "write", Text: "/srv/b.txt", N: 4096},
		{Kind: KindPGQuery, Offset: 6 * time.Second, Text: "SELECT 1"},
		{Kind: KindPGParse, Offset: 6 * time.Second, Name: "s1", Text: "SELECT * FROM t WHERE id = $1"},
		{Kind: KindPGBind, Offset: 6 * time.Second, Name: "", Text: "s1", Args: []string{"42", ""}},
		{Kind: KindPGExecute, Offset: 6 * time.Second, N: 0},
		{Kind: KindPGRow, Offset: 6 * time.Second, Args: []string{"42", "alice"}},
		{Kind: KindPGComplete, Offset: 6 * time.Second, Text: "SELECT 1", N: 1},
		{Kind: KindPGError, Offset: 7 * time.Second, Op: "42P01", Name: "ERROR", Text: `relation "nope" does not exist`},
		{Kind: KindPGCopy, Offset: 8 * time.Second, Op: "in", Text: "text", N: 3},
		{Kind: KindPGCopy, Offset: 8 * time.Second, Op: "done", N: 1 << 40},
		{Kind: KindPGTx, Offset: 9 * time.Second, Op: "begin"},
		{Kind: KindPGTx, Offset: 9 * time.Second, Op: "rollback"},
		{Kind: KindNote, Offset: 10 * time.Second, Op: "fail_open", Text: "store unreachable"},
		{Kind: KindEnd, Offset: 11 * time.Second, Op: "terminated", Name: "sec-admin", Text: "access revoked", N: -1},
	}
}

func encodeAll(evs []Event) []byte {
	var b []byte
	for i := range evs {
		b = Append(b, &evs[i])
	}
	return b
}

func decodeAll(t testing.TB, b []byte) []Event {
	t.Helper()
	var out []Event
	d := NewDecoder(b)
	var e Event
	for d.Next(&e) {
		out = append(out, e)
	}
	if err := d.Err(); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	in := sample()
	got := decodeAll(t, encodeAll(in))
	if !reflect.DeepEqual(got, in) {
		for i := range in {
			if i >= len(got) || !reflect.DeepEqual(got[i], in[i]) {
				t.Fatalf("event %d: got %+v, want %+v", i, got[i], in[i])
			}
		}
		t.Fatalf("got %d events, want %d", len(got), len(in))
	}
}

// TestGolden pins the byte encoding: a change here breaks every stored
// recording. Run with -update only for a deliberate format change.
func TestGolden(t *testing.T) {
	got := []byte(hex.Dump(encodeAll(sample())))
	path := filepath.Join("testdata", "events.golden")
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
		t.Errorf("encoding differs from %s:\n%s", path, got)
	}
}

func TestAppendDataMatchesAppend(t *testing.T) {
	for _, size := range []int{0, 1, 120, 127, 128, 300, 16370, 16384, 70000, MaxFieldLen} {
		for _, ch := range []uint32{0, 7, 300} {
			for _, off := range []time.Duration{0, 1234567 * time.Microsecond} {
				p := bytes.Repeat([]byte{'a'}, size)
				e := Event{Kind: KindOutput, Offset: off, Channel: ch, Data: p}
				a := Append([]byte("prefix"), &e)
				b := AppendData([]byte("prefix"), KindOutput, e.Offset, ch, p)
				if !bytes.Equal(a, b) {
					t.Fatalf("size %d channel %d offset %s: AppendData and Append disagree", size, ch, off)
				}
				if size == 0 {
					e.Data = nil
				}
				if got := decodeAll(t, a[len("prefix"):]); len(got) != 1 || !reflect.DeepEqual(got[0], e) {
					t.Fatalf("size %d: round trip: %+v", size, got)
				}
			}
		}
	}
}

func TestTruncation(t *testing.T) {
	long := strings.Repeat("x", MaxFieldLen+10)
	e := Event{Kind: KindPGQuery, Text: long}
	got := decodeAll(t, Append(nil, &e))
	if len(got[0].Text) != MaxFieldLen || !got[0].Truncated {
		t.Fatalf("text len %d truncated %v", len(got[0].Text), got[0].Truncated)
	}
}

func TestAppendDataAllocs(t *testing.T) {
	buf := make([]byte, 0, 1<<20)
	p := make([]byte, 512)
	allocs := testing.AllocsPerRun(1000, func() {
		buf = AppendData(buf[:0], KindOutput, time.Second, 1, p)
	})
	if allocs != 0 {
		t.Fatalf("AppendData allocates %.1f times per call", allocs)
	}
	e := Event{Kind: KindPGQuery, Offset: time.Second, Text: "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 1"}
	allocs = testing.AllocsPerRun(1000, func() {
		buf = Append(buf[:0], &e)
	})
	if allocs != 0 {
		t.Fatalf("Append allocates %.1f times per call", allocs)
	}
}

func TestDecodeRejects(t *testing.T) {
	good := Append(nil, &Event{Kind: KindOutput, Offset: 5, Data: []byte("hi")})
	later := Append(nil, &Event{Kind: KindOutput, Offset: 10})
	tests := []struct {
		name string
		in   []byte
	}{
		{"truncated record", good[:len(good)-1]},
		{"zero length", []byte{0}},
		{"length past end", []byte{0x7f, 1, 0}},
		{"bad varint length", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"unknown wire type", []byte{3, 1, 0, 1<<3 | 5}},
		{"field length past end", []byte{4, 1, 0, fieldText<<3 | wireBytes, 9}},
		{"channel out of range", []byte{8, 1, 0, fieldChannel << 3, 0x80, 0x80, 0x80, 0x80, 0x10}},
		{"offset backwards", append(append([]byte{}, later...), good...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDecoder(tt.in)
			var e Event
			for d.Next(&e) {
			}
			if !errors.Is(d.Err(), ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", d.Err())
			}
		})
	}
}

func TestDecodeSkipsUnknownFields(t *testing.T) {
	// kind output, offset 1, unknown varint field 13, unknown bytes field 14, then data.
	body := []byte{byte(KindOutput), 1, 13 << 3, 5, 14<<3 | wireBytes, 2, 'z', 'z', fieldData<<3 | wireBytes, 1, 'a'}
	rec := append([]byte{byte(len(body))}, body...)
	got := decodeAll(t, rec)
	if len(got) != 1 || string(got[0].Data) != "a" {
		t.Fatalf("got %+v", got)
	}
}

// TestResultBytesField checks the bytes field added for pg_result: it
// round-trips (negative values too), an event without it encodes exactly
// as before, and JSON carries it.
func TestResultBytesField(t *testing.T) {
	e := Event{Kind: KindPGResult, Offset: time.Second, Op: "copy_out", Text: "ab", N: 3, Bytes: 1 << 33, Args: []string{"23:id"}}
	neg := Event{Kind: KindPGResult, Offset: time.Second, Bytes: -1}
	got := decodeAll(t, encodeAll([]Event{e, neg}))
	if len(got) != 2 || got[0].Bytes != 1<<33 || got[0].N != 3 || got[0].Op != "copy_out" || got[1].Bytes != -1 {
		t.Fatalf("got %+v", got)
	}
	old := Event{Kind: KindPGComplete, Text: "SELECT 1", N: 1}
	if b := Append(nil, &old); !bytes.Equal(b, []byte{14, byte(KindPGComplete), 0, fieldText<<3 | wireBytes, 8, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', fieldN << 3, 2}) {
		t.Fatalf("encoding without bytes changed: %x", b)
	}
	j, err := json.Marshal(e)
	if err != nil || !strings.Contains(string(j), `"kind":"pg_result"`) || !strings.Contains(string(j), `"bytes":8589934592`) {
		t.Fatalf("json %s %v", j, err)
	}
	var back Event
	if err := json.Unmarshal(j, &back); err != nil || back.Bytes != e.Bytes {
		t.Fatalf("json back %+v %v", back, err)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	for _, e := range sample() {
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var back Event
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if !reflect.DeepEqual(back, e) {
			t.Fatalf("json round trip: %s -> %+v", b, back)
		}
	}
}

func TestValidSessionID(t *testing.T) {
	for id, ok := range map[string]bool{
		"ses_abc123": true, "a.b-c_D": true, "": false, ".hidden": false,
		"a/b": false, "a b": false, strings.Repeat("a", MaxSessionIDLen+1): false,
		"../x": false,
	} {
		if err := ValidSessionID(id); (err == nil) != ok {
			t.Errorf("ValidSessionID(%q) = %v, want ok=%v", id, err, ok)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(encodeAll(sample()))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		d := NewDecoder(b)
		var e Event
		var evs []Event
		for d.Next(&e) {
			evs = append(evs, e)
		}
		if d.Err() == nil && d.Offset() != len(b) {
			t.Fatalf("stopped at %d of %d without error", d.Offset(), len(b))
		}
		// Whatever decodes must re-encode to something that decodes to the
		// same events.
		again := decodeAll(t, encodeAll(evs))
		if len(again) != len(evs) {
			t.Fatalf("re-encode: %d events, want %d", len(again), len(evs))
		}
		for i := range evs {
			if !reflect.DeepEqual(normalize(again[i]), normalize(evs[i])) {
				t.Fatalf("event %d: %+v != %+v", i, again[i], evs[i])
			}
		}
	})
}

// normalize maps empty slices to nil, which the encoding does not tell apart.
func normalize(e Event) Event {
	if len(e.Data) == 0 {
		e.Data = nil
	}
	if len(e.Args) == 0 {
		e.Args = nil
	}
	return e
}

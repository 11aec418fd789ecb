package chunk

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/custos-pam/custos/recorder/event"
)

var update = flag.Bool("update", false, "rewrite golden files")

var testKey = bytes.Repeat([]byte{0x42}, 32)

func testFrame() Frame {
	f := Frame{
		SessionID: "ses_golden",
		Seq:       2,
		Events:    3,
		First:     1500 * time.Millisecond,
		Last:      2 * time.Second,
		Sealed:    time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC),
	}
	copy(f.Prev[:], bytes.Repeat([]byte{0xab}, 32))
	return f
}

func testEvents() []byte {
	var b []byte
	b = event.Append(b, &event.Event{Kind: event.KindOutput, Offset: 1500 * time.Millisecond, Channel: 1, Data: []byte("hello\r\n")})
	b = event.Append(b, &event.Event{Kind: event.KindResize, Offset: 1600 * time.Millisecond, Channel: 1, Cols: 100, Rows: 30})
	b = event.Append(b, &event.Event{Kind: event.KindPGQuery, Offset: 2 * time.Second, Text: "SELECT now()"})
	return b
}

// zeros is a deterministic nonce source for golden output.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func seal(t testing.TB, f Frame, pt []byte) []byte {
	t.Helper()
	aead, err := NewAEAD(testKey)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Seal(aead, f, pt, zeros{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSealOpen(t *testing.T) {
	f := testFrame()
	pt := testEvents()
	b := seal(t, f, pt)
	aead, _ := NewAEAD(testKey)
	got, plain, err := Open(aead, b)
	if err != nil {
		t.Fatal(err)
	}
	if got.SessionID != f.SessionID || got.Seq != f.Seq || got.Prev != f.Prev || got.Events != f.Events ||
		got.First != f.First || got.Last != f.Last || !got.Sealed.Equal(f.Sealed) {
		t.Fatalf("frame = %+v, want %+v", got, f)
	}
	if !bytes.Equal(plain, pt) {
		t.Fatal("plaintext differs")
	}
	if bytes.Contains(b, []byte("hello")) || bytes.Contains(b, []byte("SELECT")) {
		t.Fatal("chunk holds plaintext")
	}
}

// TestGolden pins the chunk layout; see docs/recording-format.md.
func TestGolden(t *testing.T) {
	got := []byte(hex.Dump(seal(t, testFrame(), testEvents())))
	path := filepath.Join("testdata", "chunk.golden")
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
		t.Errorf("chunk bytes differ from %s:\n%s", path, got)
	}
}

// TestEveryByteAuthenticated flips each byte of a chunk in turn: Open must
// refuse every variant, including flips in the clear header, which is the
// additional data.
func TestEveryByteAuthenticated(t *testing.T) {
	b := seal(t, testFrame(), testEvents())
	aead, _ := NewAEAD(testKey)
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		if _, _, err := Open(aead, c); err == nil {
			t.Fatalf("flipping byte %d went unnoticed", i)
		}
	}
}

func TestWrongKey(t *testing.T) {
	b := seal(t, testFrame(), testEvents())
	other, _ := NewAEAD(bytes.Repeat([]byte{1}, 32))
	if _, _, err := Open(other, b); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("err = %v, want ErrDecrypt", err)
	}
}

func TestParseRejects(t *testing.T) {
	good := seal(t, testFrame(), testEvents())
	hdrLen := func(b []byte, n uint16) []byte {
		c := bytes.Clone(b)
		c[len(Magic)+1], c[len(Magic)+2] = byte(n>>8), byte(n)
		return c
	}
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"bad magic", append([]byte("XUSTOSCK"), good[8:]...)},
		{"bad version", append(append([]byte(Magic), 9), good[9:]...)},
		{"short header length", hdrLen(good, 3)},
		{"header past end", hdrLen(good, 60000)},
		{"no tag", good[:len(good)-len(testEvents())-TagSize+3]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := Parse(tt.in); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestObjectName(t *testing.T) {
	for _, seq := range []uint64{1, 42, 999999, 1000000} {
		n := ObjectName(seq)
		if got, ok := ParseObjectName(n); !ok || got != seq {
			t.Fatalf("ParseObjectName(%q) = %d, %v", n, got, ok)
		}
	}
	for _, n := range []string{"chunk-0", "chunk-000000", "chunk-00001a", "manifest.json", "chunk-0000001"} {
		if _, ok := ParseObjectName(n); ok {
			t.Fatalf("ParseObjectName(%q) accepted", n)
		}
	}
}

// FuzzOpen feeds untrusted bytes to Parse, Open and the event decoder, the
// path a verifier or reader takes over objects fetched from storage.
func FuzzOpen(f *testing.F) {
	f.Add(seal(f, testFrame(), testEvents()))
	f.Add([]byte(Magic))
	aead, _ := NewAEAD(testKey)
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, n, err := Parse(b)
		if err != nil {
			return
		}
		if n > len(b) || fr.SessionID == "" {
			t.Fatalf("Parse returned header length %d for %d bytes", n, len(b))
		}
		_, pt, err := Open(aead, b)
		if err != nil {
			return
		}
		d := event.NewDecoder(pt)
		var e event.Event
		for d.Next(&e) {
		}
	})
}

package chunk

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"math/rand/v2"
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

// compressibleEvents are a screenful of terminal output, repeated.
func compressibleEvents() []byte {
	var b []byte
	line := []byte("drwxr-xr-x 2 alice staff 4096 Mar  4 05:06 some-directory\r\n")
	for i := range 40 {
		b = event.AppendData(b, event.KindOutput, time.Duration(i)*time.Millisecond, 1, bytes.Repeat(line, 30))
	}
	return b
}

// randomEvents hold incompressible output.
func randomEvents() []byte {
	p := make([]byte, 64<<10)
	rand.NewChaCha8([32]byte{7}).Read(p)
	return event.AppendData(nil, event.KindOutput, time.Second, 1, p)
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
	tests := []struct {
		name  string
		pt    []byte
		codec Codec
	}{
		{"small events stay uncompressed", testEvents(), CodecNone},
		{"terminal output is compressed", compressibleEvents(), CodecS2},
		{"incompressible output is stored as is", randomEvents(), CodecNone},
		{"empty", nil, CodecNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := testFrame()
			b := seal(t, f, tt.pt)
			aead, _ := NewAEAD(testKey)
			got, plain, err := Open(aead, b)
			if err != nil {
				t.Fatal(err)
			}
			if got.SessionID != f.SessionID || got.Seq != f.Seq || got.Prev != f.Prev || got.Events != f.Events ||
				got.First != f.First || got.Last != f.Last || !got.Sealed.Equal(f.Sealed) || got.Version != Version {
				t.Fatalf("frame = %+v, want %+v", got, f)
			}
			if got.Codec != tt.codec || int(got.Size) != len(tt.pt) {
				t.Fatalf("codec %s size %d, want %s %d", got.Codec, got.Size, tt.codec, len(tt.pt))
			}
			if !bytes.Equal(plain, tt.pt) {
				t.Fatal("plaintext differs")
			}
			if tt.codec == CodecS2 && len(b) > len(tt.pt)/4 {
				t.Fatalf("compressed chunk is %d bytes for %d bytes of events", len(b), len(tt.pt))
			}
			if tt.codec == CodecNone && len(b) > len(tt.pt)+200 {
				t.Fatalf("stored chunk is %d bytes for %d bytes of events", len(b), len(tt.pt))
			}
			if bytes.Contains(b, []byte("hello")) || bytes.Contains(b, []byte("SELECT")) || bytes.Contains(b, []byte("alice")) {
				t.Fatal("chunk holds plaintext")
			}
		})
	}
}

func TestAppendSealReusesBuffer(t *testing.T) {
	aead, _ := NewAEAD(testKey)
	pt := compressibleEvents()
	buf := make([]byte, 3, 2*len(pt))
	copy(buf, "abc")
	b, err := AppendSeal(buf, aead, testFrame(), pt, zeros{})
	if err != nil {
		t.Fatal(err)
	}
	if &b[0] != &buf[0] || string(b[:3]) != "abc" {
		t.Fatal("AppendSeal did not append into dst's storage")
	}
	if !bytes.Equal(b[3:], seal(t, testFrame(), pt)) {
		t.Fatal("AppendSeal and Seal differ")
	}
}

// TestReadsVersion1 opens a chunk written before compression was added
// (frame version 1): old recordings stay readable.
func TestReadsVersion1(t *testing.T) {
	b := readDump(t, "chunk-v1.golden")
	aead, _ := NewAEAD(testKey)
	f, pt, err := Open(aead, b)
	if err != nil {
		t.Fatal(err)
	}
	want := testFrame()
	if f.Version != 1 || f.Codec != CodecNone || int(f.Size) != len(pt) || f.Seq != want.Seq || f.Events != want.Events ||
		f.SessionID != want.SessionID || !f.Sealed.Equal(want.Sealed) {
		t.Fatalf("frame = %+v", f)
	}
	if !bytes.Equal(pt, testEvents()) {
		t.Fatal("events differ")
	}
}

// readDump reads a testdata file written by hex.Dump back into bytes.
func readDump(t *testing.T, name string) []byte {
	t.Helper()
	d, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	var out []byte
	for _, line := range bytes.Split(d, []byte("\n")) {
		if len(line) < 10 {
			continue
		}
		hexPart := line[10:min(len(line), 58)]
		b, err := hex.DecodeString(string(bytes.ReplaceAll(hexPart, []byte(" "), nil)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, b...)
	}
	return out
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

// TestGoldenCompressed reads a pinned compressed chunk. Only decoding is
// pinned: another encoder version may compress differently, and any valid
// S2 block is a valid chunk body.
func TestGoldenCompressed(t *testing.T) {
	path := filepath.Join("testdata", "chunk-s2.golden")
	if *update {
		if err := os.WriteFile(path, []byte(hex.Dump(seal(t, testFrame(), compressibleEvents()))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	aead, _ := NewAEAD(testKey)
	f, pt, err := Open(aead, readDump(t, "chunk-s2.golden"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Codec != CodecS2 || !bytes.Equal(pt, compressibleEvents()) {
		t.Fatalf("codec %s, events equal %v", f.Codec, bytes.Equal(pt, compressibleEvents()))
	}
}

// TestEveryByteAuthenticated flips each byte of a chunk in turn: Open must
// refuse every variant, including flips in the clear header, which is the
// additional data.
func TestEveryByteAuthenticated(t *testing.T) {
	for _, pt := range [][]byte{testEvents(), compressibleEvents()} {
		b := seal(t, testFrame(), pt)
		aead, _ := NewAEAD(testKey)
		for i := range b {
			c := bytes.Clone(b)
			c[i] ^= 0x01
			if _, _, err := Open(aead, c); err == nil {
				t.Fatalf("flipping byte %d went unnoticed", i)
			}
		}
	}
}

// reseal decrypts a chunk, lets edit change its header and ciphertext
// input, and encrypts it again under the test key: a chunk written by a
// faulty or hostile key holder.
func reseal(t *testing.T, b []byte, edit func(hdr, body []byte) ([]byte, []byte)) []byte {
	t.Helper()
	aead, _ := NewAEAD(testKey)
	f, n, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	body, err := aead.Open(nil, f.Nonce[:], b[n:], b[:n])
	if err != nil {
		t.Fatal(err)
	}
	hdr, body := edit(bytes.Clone(b[:n]), body)
	return aead.Seal(hdr, f.Nonce[:], body, hdr)
}

// TestOpenRejectsBadCompression: an authenticated chunk whose compressed
// events are corrupt, or do not match the size its header states, is
// refused rather than trusted.
func TestOpenRejectsBadCompression(t *testing.T) {
	good := seal(t, testFrame(), compressibleEvents())
	sizeAt := func(hdr []byte) int { return len(hdr) - 4 }
	tests := []struct {
		name string
		edit func(hdr, body []byte) ([]byte, []byte)
	}{
		{"size too small", func(h, b []byte) ([]byte, []byte) {
			binary.BigEndian.PutUint32(h[sizeAt(h):], binary.BigEndian.Uint32(h[sizeAt(h):])-1)
			return h, b
		}},
		{"corrupt block", func(h, b []byte) ([]byte, []byte) {
			b[len(b)/2] ^= 0xff
			b[len(b)/2+1] ^= 0xff
			return h, b
		}},
		{"truncated block", func(h, b []byte) ([]byte, []byte) { return h, b[:len(b)/2] }},
	}
	aead, _ := NewAEAD(testKey)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := reseal(t, good, tt.edit)
			if _, _, err := Open(aead, b); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
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
	// The codec and size fields end the header.
	tail := func(b []byte, edit func(codec *byte, size []byte)) []byte {
		c := bytes.Clone(b)
		_, n, err := Parse(c)
		if err != nil {
			t.Fatal(err)
		}
		edit(&c[n-5], c[n-4:n])
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
		{"no codec field", hdrLen(good, uint16(fixedLen+1+len("ses_golden")))},
		{"unknown codec", tail(good, func(c *byte, _ []byte) { *c = 9 })},
		{"uncompressed size differs", tail(good, func(_ *byte, s []byte) { s[3]++ })},
		{"size past the bound", tail(good, func(c *byte, s []byte) {
			*c = byte(CodecS2)
			binary.BigEndian.PutUint32(s, MaxPlaintext+1)
		})},
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
	f.Add(seal(f, testFrame(), compressibleEvents()))
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

package backup

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

func seal(t *testing.T, key, plain []byte, name string) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := newSealWriter(&buf, key, "bak_1", name)
	if err != nil {
		t.Fatal(err)
	}
	// Odd write sizes cross chunk boundaries.
	for p := plain; len(p) > 0; {
		n := min(len(p), 1000+len(p)%7777)
		if _, err := w.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func open(key, sealed []byte, id, name string) ([]byte, error) {
	r, err := newOpenReader(bytes.NewReader(sealed), key, id, name)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func TestStreamRoundTrip(t *testing.T) {
	key, _ := newDataKey()
	for _, size := range []int{0, 1, chunkSize - 1, chunkSize, chunkSize + 1, 3*chunkSize + 17} {
		plain := make([]byte, size)
		rand.Read(plain)
		got, err := open(key, seal(t, key, plain, "t.enc"), "bak_1", "t.enc")
		if err != nil || !bytes.Equal(got, plain) {
			t.Errorf("size %d: %v, equal %v", size, err, bytes.Equal(got, plain))
		}
	}
}

// chunks splits a sealed stream into its prefix and chunks (with their
// length words).
func chunks(sealed []byte) (prefix []byte, cs [][]byte) {
	prefix, rest := sealed[:prefixSize], sealed[prefixSize:]
	for len(rest) > 0 {
		n := 4 + int(binary.BigEndian.Uint32(rest))
		cs = append(cs, rest[:n])
		rest = rest[n:]
	}
	return prefix, cs
}

func TestStreamRefusesAlteredStreams(t *testing.T) {
	key, _ := newDataKey()
	plain := make([]byte, 3*chunkSize+5)
	rand.Read(plain)
	sealed := seal(t, key, plain, "t.enc")
	prefix, cs := chunks(sealed)
	if len(cs) != 4 {
		t.Fatalf("%d chunks, want 4", len(cs))
	}
	join := func(parts ...[]byte) []byte { return bytes.Join(append([][]byte{prefix}, parts...), nil) }
	other, _ := newDataKey()
	cases := []struct {
		name     string
		data     []byte
		key      []byte
		id, file string
	}{
		{"last chunk dropped", join(cs[0], cs[1], cs[2]), key, "bak_1", "t.enc"},
		{"chunks swapped", join(cs[1], cs[0], cs[2], cs[3]), key, "bak_1", "t.enc"},
		{"chunk repeated", join(cs[0], cs[0], cs[1], cs[2], cs[3]), key, "bak_1", "t.enc"},
		{"data after the last chunk", append(join(cs...), 0), key, "bak_1", "t.enc"},
		{"another file's name", sealed, key, "bak_1", "u.enc"},
		{"another backup", sealed, key, "bak_2", "t.enc"},
		{"another key", sealed, other, "bak_1", "t.enc"},
		{"empty", nil, key, "bak_1", "t.enc"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := open(tc.key, tc.data, tc.id, tc.file); !errors.Is(err, ErrTampered) {
				t.Errorf("open: %v, want ErrTampered", err)
			}
		})
	}
}

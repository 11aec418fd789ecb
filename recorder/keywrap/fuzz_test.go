package keywrap

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
)

// FuzzLocalUnwrap feeds untrusted wrapped keys (read from a manifest in
// storage) to the local unwrapper: nothing may panic, and only the
// ciphertext the key wrapped yields a data key, the one it wrapped.
func FuzzLocalUnwrap(f *testing.F) {
	ctx := context.Background()
	l, err := LoadLocal(filepath.Join(f.TempDir(), "wrap.key"))
	if err != nil {
		f.Fatal(err)
	}
	key, w, err := l.NewDataKey(ctx)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(w.Ciphertext)
	f.Add(w.Ciphertext[:len(w.Ciphertext)-4])
	f.Add("local:v1:")
	f.Add("local:v1:!!!!")
	f.Add("local:v2:AAAA")
	f.Add("vault:v1:AAAA")
	f.Fuzz(func(t *testing.T, ct string) {
		got, err := l.Unwrap(ctx, Wrapped{Wrapper: "local", KeyID: l.KeyID(), Ciphertext: ct})
		if err != nil {
			if got != nil {
				t.Fatal("Unwrap returned a key with an error")
			}
			return
		}
		if len(got) != DataKeySize || !bytes.Equal(got, key) {
			t.Fatalf("ciphertext %q unwrapped to a key the wrapper never made", ct)
		}
	})
}

package manifest

import (
	"bytes"
	"path/filepath"
	"testing"
)

// FuzzParse feeds untrusted manifest bytes (an object fetched from
// storage) to Parse and Verify: nothing may panic, and a manifest verifies
// only when its signed member is exactly the one the key signed.
func FuzzParse(f *testing.F) {
	s, err := LoadSigner(filepath.Join(f.TempDir(), "sign.key"))
	if err != nil {
		f.Fatal(err)
	}
	signed, _, err := Sign(testManifest(), s)
	if err != nil {
		f.Fatal(err)
	}
	good, err := Parse(signed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed)
	f.Add(bytes.Replace(signed, []byte(`"state":"closed"`), []byte(`"state":"open"`), 1))
	f.Add([]byte(`{"manifest":{"format":"custos-recording","version":1},"signature":{"alg":"ed25519","value":"AAAA"}}`))
	f.Add([]byte(`{"manifest":null}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			if p != nil {
				t.Fatal("Parse returned a manifest with an error")
			}
			return
		}
		if p.Manifest.Format != Format || p.Manifest.Version != Version || p.Hash != HashFile(b) {
			t.Fatalf("Parse accepted %q version %d, hash %s", p.Manifest.Format, p.Manifest.Version, p.Hash)
		}
		if _, err := p.Verify(s.Public()); err == nil && !bytes.Equal(p.Raw, good.Raw) {
			t.Fatalf("a manifest the key never signed verifies: %s", p.Raw)
		}
	})
}

package manifest

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/custos-pam/custos/recorder/keywrap"
)

func testManifest() *Manifest {
	return &Manifest{
		Format: Format, Version: Version, SessionID: "ses_1",
		Header: json.RawMessage(`{"session_id":"ses_1"}`), HeaderHash: "aa",
		State: StateClosed, StartedAt: time.Unix(100, 0).UTC(), EndedAt: time.Unix(200, 0).UTC(),
		Cipher: "AES-256-GCM", Key: keywrap.Wrapped{Wrapper: "local", KeyID: "local:1", Ciphertext: "x"},
		Chunks:    []Chunk{{Seq: 1, Key: "k/chunk-000001", VersionID: "v1", SHA256: "bb", Prev: "aa", Size: 10, Events: 2}},
		ChainHead: "bb", Events: 2, Bytes: 10,
		Retention: Retention{Mode: "COMPLIANCE", Until: time.Unix(300, 0).UTC()},
		Store:     "s3",
	}
}

func TestSignVerify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "sign.key")
	s, err := LoadSigner(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", fi.Mode(), err)
	}
	again, err := LoadSigner(path)
	if err != nil || !again.Public().Equal(s.Public()) {
		t.Fatalf("reloaded key differs: %v", err)
	}
	b, hash, err := Sign(testManifest(), s)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if p.Hash != hash || p.Manifest.Chunks[0].VersionID != "v1" {
		t.Fatalf("parsed %+v", p)
	}
	id, err := p.Verify(s.Public())
	if err != nil || id != s.KeyID() {
		t.Fatalf("Verify = %q, %v", id, err)
	}

	_, other, _ := ed25519.GenerateKey(nil)
	if _, err := p.Verify(other.Public().(ed25519.PublicKey)); !errors.Is(err, ErrSignature) {
		t.Fatalf("foreign key: err = %v", err)
	}

	// Any change inside the signed member breaks the signature.
	forged := bytes.Replace(b, []byte(`"state":"closed"`), []byte(`"state":"closeD"`), 1)
	if bytes.Equal(forged, b) {
		t.Fatal("test did not change the manifest")
	}
	fp, err := Parse(forged)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fp.Verify(s.Public()); !errors.Is(err, ErrSignature) {
		t.Fatalf("forged manifest: err = %v", err)
	}
	if fp.Hash == hash {
		t.Fatal("hash did not change")
	}
}

func TestParseRejects(t *testing.T) {
	for name, in := range map[string]string{
		"not json":       "{",
		"no manifest":    `{"signature":{}}`,
		"wrong format":   `{"manifest":{"format":"other","version":1}}`,
		"future version": `{"manifest":{"format":"custos-recording","version":99}}`,
	} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

package backup

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
)

// ResealTable plays an insider who holds the passphrase and the signing
// key: it decrypts a table, edits its rows, encrypts it again, fixes the
// manifest's entry and signs the manifest again.
func ResealTable(dir string, passphrase []byte, table string, edit func([]byte) []byte) error {
	raw, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return err
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return err
	}
	sealed, err := os.ReadFile(filepath.Join(dir, KeysFile))
	if err != nil {
		return err
	}
	keys, dataKey, err := openKeys(passphrase, m.ID, sealed)
	if err != nil {
		return err
	}
	name := TableFile(table)
	path := filepath.Join(dir, name)
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	dec, err := newOpenReader(f, dataKey, m.ID, name)
	if err != nil {
		return err
	}
	plain, err := io.ReadAll(dec)
	f.Close()
	if err != nil {
		return err
	}
	plain = edit(plain)
	os.Remove(path)
	t := newTableWriter(path, dataKey, m.ID)
	for _, line := range bytes.SplitAfter(plain, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if _, err := t.bw.Write(line); err != nil {
			return err
		}
		t.rows++
	}
	fe, err := t.close()
	if err != nil {
		return err
	}
	for i := range m.Files {
		if m.Files[i].Name == name {
			m.Files[i] = fe
		}
	}
	signer, err := parseSigningKey(keys[SigningKeyName])
	if err != nil {
		return err
	}
	os.Remove(filepath.Join(dir, ManifestFile))
	os.Remove(filepath.Join(dir, SignatureFile))
	return writeManifest(dir, &m, signer)
}

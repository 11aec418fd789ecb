package backup

import (
	"bufio"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// maxLine bounds one JSONL line (one row) a restore reads.
const maxLine = 64 << 20

// Checked is a backup that passed every check: its manifest, and the key
// files it seals. Keys are secret; Close clears them.
type Checked struct {
	Dir      string
	Manifest Manifest
	Keys     map[string][]byte
	dataKey  []byte
}

// Close clears the key bytes.
func (c *Checked) Close() {
	clearKeys(c.Keys)
	clear(c.dataKey)
}

// Check reads a backup and checks all of it without writing anything: the
// passphrase opens keys.enc; the signing key inside verifies
// manifest.sig; the directory holds exactly the files the manifest lists,
// each with its size and SHA-256; every row decodes; and the audit rows
// form an intact chain that ends exactly at the manifest's head. Errors
// wrap ErrTampered or ErrPassphrase.
func Check(dir string, passphrase []byte) (*Checked, error) {
	raw, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("restore: %w", tampered("manifest.json does not decode"))
	}
	if m.Format != FormatVersion {
		return nil, fmt.Errorf("restore: backup format %d, this Custos reads format %d", m.Format, FormatVersion)
	}
	kf, ok := m.file(KeysFile)
	if !ok {
		return nil, fmt.Errorf("restore: %w", tampered("the manifest lists no keys.enc"))
	}
	sealed, err := os.ReadFile(filepath.Join(dir, KeysFile))
	if err != nil {
		return nil, fmt.Errorf("restore: %w", tampered("keys.enc: %v", err))
	}
	if sum := sha256.Sum256(sealed); hex.EncodeToString(sum[:]) != kf.SHA256 {
		return nil, fmt.Errorf("restore: %w", tampered("keys.enc does not match the manifest"))
	}
	keys, dataKey, err := openKeys(passphrase, m.ID, sealed)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	c := &Checked{Dir: dir, Manifest: m, Keys: keys, dataKey: dataKey}
	if err := c.verify(raw); err != nil {
		c.Close()
		return nil, fmt.Errorf("restore: %w", err)
	}
	return c, nil
}

func (c *Checked) verify(rawManifest []byte) error {
	m := &c.Manifest
	signer, err := parseSigningKey(c.Keys[SigningKeyName])
	if err != nil {
		return tampered("%v", err)
	}
	pub := signer.Public().(ed25519.PublicKey)
	sigHex, err := os.ReadFile(filepath.Join(c.Dir, SignatureFile))
	if err != nil {
		return tampered("manifest.sig: %v", err)
	}
	sig, err := hex.DecodeString(strings.TrimSpace(string(sigHex)))
	if err != nil || !ed25519.Verify(pub, rawManifest, sig) {
		return tampered("manifest.json is not signed by the signing key in the backup")
	}
	if m.SignedBy != keyID(pub) {
		return tampered("manifest names signing key %s, the backup holds %s", m.SignedBy, keyID(pub))
	}
	// Exactly the listed files, no more, no fewer.
	want := []string{ManifestFile, SignatureFile}
	for _, f := range m.Files {
		want = append(want, f.Name)
	}
	ents, err := os.ReadDir(c.Dir)
	if err != nil {
		return err
	}
	var have []string
	for _, e := range ents {
		have = append(have, e.Name())
	}
	slices.Sort(want)
	slices.Sort(have)
	if !slices.Equal(want, have) {
		return tampered("the directory holds %s, the manifest lists %s", strings.Join(have, ", "), strings.Join(want, ", "))
	}
	for _, table := range Tables {
		if err := c.readTable(table, checkRow(table, m.Head)); err != nil {
			return err
		}
	}
	return nil
}

// checkRow returns the per-row check of a table's first pass: the audit
// rows must chain and end at head; other rows must decode.
func checkRow(table string, head Head) func(line []byte, last bool) error {
	var chain audit.Chain
	var n int64
	return func(line []byte, last bool) error {
		if line != nil {
			row, err := decodeRow(table, line)
			if err != nil {
				return err
			}
			n++
			if rec, ok := row.(broker.AuditRecord); ok && !chain.Next(rec) {
				rep := chain.Report()
				return tampered("%s: %s", TableFile("audit"), rep.Problem)
			}
		}
		if last && table == "audit" {
			rep := chain.Report()
			if n != head.Seq || rep.Head != head.Hash {
				return tampered("the audit table ends at record %d (hash %.16s), the backup's recorded audit head is record %d (hash %.16s): audit records are missing",
					n, rep.Head, head.Seq, head.Hash)
			}
		}
		return nil
	}
}

// decodeRow decodes one line of a table file.
func decodeRow(table string, line []byte) (any, error) {
	var err error
	var v any
	switch table {
	case "requests":
		var r broker.Request
		err = json.Unmarshal(line, &r)
		if err == nil && r.ID == "" {
			err = errors.New("empty id")
		}
		v = r
	case "grants":
		var g broker.Grant
		err = json.Unmarshal(line, &g)
		if err == nil && g.ID == "" {
			err = errors.New("empty id")
		}
		v = g
	case "tokens":
		var t tokenRow
		err = json.Unmarshal(line, &t)
		t.Token.Hash = t.Hash
		v = t.Token
	case "sessions":
		var s sessionRow
		err = json.Unmarshal(line, &s)
		s.Session.Index = s.Index
		v = s.Session
	case "audit":
		var r broker.AuditRecord
		err = json.Unmarshal(line, &r)
		v = r
	case "state":
		var s stateRow
		err = json.Unmarshal(line, &s)
		if err == nil && s.Key == "" {
			err = errors.New("empty key")
		}
		v = s
	default:
		return nil, fmt.Errorf("unknown table %s", table)
	}
	if err != nil {
		return nil, tampered("%s: a row does not decode: %v", TableFile(table), err)
	}
	return v, nil
}

// readTable streams a table file through fn, a row at a time (fn gets a
// nil line and last=true at the end), decrypting it, and checks the
// file's size, row count and SHA-256 against the manifest before the
// final call.
func (c *Checked) readTable(table string, fn func(line []byte, last bool) error) error {
	name := TableFile(table)
	want, ok := c.Manifest.file(name)
	if !ok {
		return tampered("the manifest lists no %s", name)
	}
	f, err := os.Open(filepath.Join(c.Dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return tampered("%s is missing", name)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	var size countWriter
	dec, err := newOpenReader(io.TeeReader(f, io.MultiWriter(h, &size)), c.dataKey, c.Manifest.ID, name)
	if err != nil {
		return err
	}
	r := bufio.NewReaderSize(dec, chunkSize)
	var rows int64
	for {
		line, err := readLine(r)
		if err == io.EOF {
			break
		}
		if errors.Is(err, ErrTampered) {
			return err
		}
		if err != nil {
			return tampered("%s: %v", name, err)
		}
		rows++
		if err := fn(line, false); err != nil {
			return err
		}
	}
	if err := compareFile(want, int64(size), rows, h); err != nil {
		return err
	}
	return fn(nil, true)
}

func compareFile(want File, size, rows int64, h hash.Hash) error {
	if got := hex.EncodeToString(h.Sum(nil)); size != want.Size || rows != want.Rows || got != want.SHA256 {
		return tampered("%s does not match the manifest (%d bytes, %d rows, sha256 %.16s; manifest: %d bytes, %d rows, sha256 %.16s)",
			want.Name, size, rows, got, want.Size, want.Rows, want.SHA256)
	}
	return nil
}

// readLine reads one newline-terminated line of at most maxLine bytes.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		part, err := r.ReadSlice('\n')
		line = append(line, part...)
		if len(line) > maxLine {
			return nil, errors.New("line too long")
		}
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF && len(line) == 0:
			return nil, io.EOF
		case err == io.EOF:
			return nil, errors.New("last line not terminated")
		default:
			return nil, err
		}
	}
}

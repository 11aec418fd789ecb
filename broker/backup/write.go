package backup

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// SigningKeyName is the name of the recording signing key among the key
// files; it signs the backup's manifest.
const SigningKeyName = "recording_signing_key"

// auditPage is how many audit records are read at a time.
const auditPage = 1000

// KeyFile is one key file a backup carries.
type KeyFile struct {
	// Name identifies the key inside the backup, e.g. "ssh_user_ca".
	Name string
	// Path is the file, where the broker keeps it.
	Path string
	// Optional keys are left out when the file does not exist (the local
	// wrap key of a broker that wraps with Vault Transit).
	Optional bool
}

// Options configure Write.
type Options struct {
	// Store is the store to snapshot. Required.
	Store broker.Store
	// Driver names the store's driver in the manifest.
	Driver string
	// Keys are the key files to seal; one must be named SigningKeyName.
	Keys []KeyFile
	// Passphrase seals the key files. At least MinPassphrase bytes.
	Passphrase []byte
	// Dir is the backup directory to create. It must not exist, or be
	// empty.
	Dir string
}

// exporter is what the SQL stores' transactions offer beyond broker.Tx
// for a backup: every state key.
type exporter interface {
	ListStateKeys() ([]string, error)
}

// tokenRow and sessionRow carry the fields the entities' JSON leaves out.
type tokenRow struct {
	Token broker.Token `json:"token"`
	Hash  string       `json:"hash"`
}

type sessionRow struct {
	Session broker.Session `json:"session"`
	Index   string         `json:"index"`
}

type stateRow struct {
	Key   string `json:"key"`
	Value []byte `json:"value"`
}

// Write takes a backup into o.Dir: the store's rows read in one read
// transaction, the audit head they reach, and the key files sealed under
// the passphrase, with a manifest signed by the recording signing key.
// The files are written to a sibling directory that is renamed to o.Dir
// only when complete, so a failed backup leaves nothing that looks like
// one. Nothing of the keys is written in clear.
func Write(ctx context.Context, o Options) (*Manifest, error) {
	if o.Store == nil || o.Dir == "" {
		return nil, errors.New("backup: a store and a directory are required")
	}
	if len(o.Passphrase) < MinPassphrase {
		return nil, fmt.Errorf("backup: the passphrase must have at least %d characters", MinPassphrase)
	}
	if err := checkTargetDir(o.Dir); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	keys, signer, err := readKeys(o.Keys)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	defer clearKeys(keys)

	parent := filepath.Dir(filepath.Clean(o.Dir))
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(o.Dir)+".partial-")
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	defer os.RemoveAll(tmp) // gone after the rename

	m := &Manifest{Format: FormatVersion, ID: broker.NewID("bak"), Driver: o.Driver,
		SignedBy: keyID(signer.Public().(ed25519.PublicKey))}
	dataKey, err := newDataKey()
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	defer clear(dataKey)
	if err := dump(ctx, o.Store, tmp, m, dataKey); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	sealed, err := sealKeys(o.Passphrase, m.ID, keys, dataKey)
	if err != nil {
		return nil, fmt.Errorf("backup: seal keys: %w", err)
	}
	if err := writeFileSync(filepath.Join(tmp, KeysFile), sealed); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	sum := sha256.Sum256(sealed)
	m.Files = append(m.Files, File{Name: KeysFile, Size: int64(len(sealed)), SHA256: hex.EncodeToString(sum[:])})
	for name := range keys {
		m.Keys = append(m.Keys, name)
	}
	slices.Sort(m.Keys)
	if err := writeManifest(tmp, m, signer); err != nil {
		return nil, fmt.Errorf("backup: manifest: %w", err)
	}
	if err := syncDir(tmp); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	_ = os.Remove(o.Dir) // an empty directory given as the target
	if err := os.Rename(tmp, o.Dir); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := syncDir(parent); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	return m, nil
}

// checkTargetDir accepts a directory that does not exist or is empty.
func checkTargetDir(dir string) error {
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case len(ents) > 0:
		return fmt.Errorf("%s is not empty: write each backup to a new directory", dir)
	}
	return nil
}

// readKeys reads the key files and returns them with the signing key.
func readKeys(files []KeyFile) (map[string][]byte, ed25519.PrivateKey, error) {
	keys := map[string][]byte{}
	for _, k := range files {
		b, err := os.ReadFile(k.Path)
		if errors.Is(err, fs.ErrNotExist) && k.Optional {
			continue
		}
		if err != nil {
			clearKeys(keys)
			return nil, nil, fmt.Errorf("key %s: %w", k.Name, err)
		}
		keys[k.Name] = b
	}
	raw, ok := keys[SigningKeyName]
	if !ok {
		clearKeys(keys)
		return nil, nil, fmt.Errorf("key %s: required to sign the backup", SigningKeyName)
	}
	signer, err := parseSigningKey(raw)
	if err != nil {
		clearKeys(keys)
		return nil, nil, err
	}
	return keys, signer, nil
}

// parseSigningKey reads the PEM (PKCS #8) Ed25519 recording signing key.
func parseSigningKey(raw []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(raw)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("key %s: no PEM private key", SigningKeyName)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", SigningKeyName, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key %s: not an Ed25519 key", SigningKeyName)
	}
	return ek, nil
}

func clearKeys(keys map[string][]byte) {
	for _, b := range keys {
		clear(b)
	}
}

// dump writes every table of the store, read in one read transaction
// (one snapshot on both drivers), and records the files and the audit
// head in m.
func dump(ctx context.Context, st broker.Store, dir string, m *Manifest, dataKey []byte) error {
	return st.View(ctx, func(tx broker.Tx) error {
		ex, ok := tx.(exporter)
		if !ok {
			return errors.New("the store does not support backups")
		}
		m.CreatedAt = time.Now().UTC()
		for _, table := range Tables {
			t := newTableWriter(filepath.Join(dir, TableFile(table)), dataKey, m.ID)
			var err error
			switch table {
			case "requests":
				err = writeAll(t, func() ([]broker.Request, error) { return tx.ListRequests(broker.RequestFilter{}) })
			case "grants":
				err = writeAll(t, func() ([]broker.Grant, error) { return tx.ListGrants(broker.GrantFilter{}) })
			case "tokens":
				err = dumpTokens(tx, t)
			case "sessions":
				err = writeAll(t, func() ([]sessionRow, error) {
					ss, err := tx.ListSessions(broker.SessionFilter{})
					rows := make([]sessionRow, len(ss))
					for i, s := range ss {
						rows[i] = sessionRow{Session: s, Index: s.Index}
					}
					return rows, err
				})
			case "audit":
				m.Head, err = dumpAudit(tx, t)
			case "state":
				err = dumpState(tx, ex, t)
			}
			f, cerr := t.close()
			if err = errors.Join(err, cerr); err != nil {
				return fmt.Errorf("dump %s: %w", table, err)
			}
			m.Files = append(m.Files, f)
		}
		return nil
	})
}

func writeAll[T any](t *tableWriter, list func() ([]T, error)) error {
	rows, err := list()
	if err != nil {
		return err
	}
	for _, r := range rows {
		if err := t.write(r); err != nil {
			return err
		}
	}
	return nil
}

func dumpTokens(tx broker.Tx, t *tableWriter) error {
	users, err := tx.ListTokenUsers()
	if err != nil {
		return err
	}
	for _, u := range users {
		toks, err := tx.ListTokens(u)
		if err != nil {
			return err
		}
		for _, tok := range toks {
			if err := t.write(tokenRow{Token: tok, Hash: tok.Hash}); err != nil {
				return err
			}
		}
	}
	return nil
}

func dumpAudit(tx broker.Tx, t *tableWriter) (Head, error) {
	head := Head{Hash: audit.GenesisHash}
	for {
		page, err := tx.ListAudit(broker.AuditFilter{AfterSeq: head.Seq, Limit: auditPage})
		if err != nil {
			return head, err
		}
		for _, r := range page {
			if err := t.write(r); err != nil {
				return head, err
			}
			head = Head{Seq: r.Seq, Hash: r.Hash}
		}
		if len(page) < auditPage {
			return head, nil
		}
	}
}

func dumpState(tx broker.Tx, ex exporter, t *tableWriter) error {
	keys, err := ex.ListStateKeys()
	if err != nil {
		return err
	}
	for _, k := range keys {
		v, err := tx.GetState(k)
		if err != nil {
			return err
		}
		if err := t.write(stateRow{Key: k, Value: v}); err != nil {
			return err
		}
	}
	return nil
}

// tableWriter writes one table file: JSON lines, encrypted, hashed and
// counted as they go to disk.
type tableWriter struct {
	path string
	f    *os.File
	enc  *sealWriter
	bw   *bufio.Writer
	h    hash.Hash
	n    countWriter
	rows int64
	err  error
}

func newTableWriter(path string, key []byte, backupID string) *tableWriter {
	t := &tableWriter{path: path, h: sha256.New()}
	t.f, t.err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if t.err == nil {
		t.enc, t.err = newSealWriter(io.MultiWriter(t.f, t.h, &t.n), key, backupID, filepath.Base(path))
	}
	if t.err == nil {
		t.bw = bufio.NewWriterSize(t.enc, chunkSize)
	}
	return t
}

func (t *tableWriter) write(v any) error {
	if t.err != nil {
		return t.err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if _, err := t.bw.Write(b); err != nil {
		t.err = err
		return err
	}
	t.rows++
	return nil
}

func (t *tableWriter) close() (File, error) {
	if t.f == nil {
		return File{}, t.err
	}
	err := t.err
	if err == nil {
		err = t.bw.Flush()
	}
	if err == nil {
		err = t.enc.Close()
	}
	if err == nil {
		err = t.f.Sync()
	}
	err = errors.Join(err, t.f.Close())
	return File{Name: filepath.Base(t.path), Size: int64(t.n), Rows: t.rows, SHA256: hex.EncodeToString(t.h.Sum(nil))}, err
}

// countWriter counts the bytes written to it.
type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}

// keyID names a public key as the recorder does: "ed25519:" and the
// first 16 hex digits of its SHA-256.
func keyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(sum[:8])
}

package backup_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/backup"
	"github.com/custos-pam/custos/broker/store/sqlite"
)

var pass = []byte("correct horse battery staple")

// keySet is a broker's key files in a data dir, and their raw secrets.
type keySet struct {
	files   []backup.KeyFile
	signing ed25519.PrivateKey
	wrap    []byte
	ca      []byte
}

func newKeys(t *testing.T, dir string) keySet {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	wrap := make([]byte, 32)
	rand.Read(wrap)
	_, ca, _ := ed25519.GenerateKey(rand.Reader)
	caDER, _ := x509.MarshalPKCS8PrivateKey(ca)
	ks := keySet{signing: priv, wrap: wrap, ca: ca.Seed(), files: destKeys(dir)}
	write := map[string][]byte{
		"recording_signing_key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		"recording_wrap_key":    []byte(base64.StdEncoding.EncodeToString(wrap) + "\n"),
		"ssh_user_ca":           pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: caDER}),
	}
	os.MkdirAll(dir, 0o700)
	for _, k := range ks.files {
		if b, ok := write[k.Name]; ok {
			if err := os.WriteFile(k.Path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	return ks
}

func destKeys(dir string) []backup.KeyFile {
	return []backup.KeyFile{
		{Name: "recording_signing_key", Path: filepath.Join(dir, "recording-signing.key")},
		{Name: "recording_wrap_key", Path: filepath.Join(dir, "recording-wrap.key"), Optional: true},
		{Name: "ssh_user_ca", Path: filepath.Join(dir, "ssh_user_ca"), Optional: true},
		{Name: "ssh_host_key", Path: filepath.Join(dir, "ssh_host_ed25519_key"), Optional: true},
	}
}

func openSQLite(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// populate writes one of everything and some audit records.
func populate(t *testing.T, st broker.Store) {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Millisecond)
	err := st.Update(t.Context(), func(tx broker.Tx) error {
		return errors.Join(
			tx.PutRequest(broker.Request{ID: "req_1", User: "alice", Target: "prod-db", Role: "rw", State: broker.RequestApproved,
				CreatedAt: now.Add(-time.Hour), ExpiresAt: now, Reason: "INC-1"}),
			tx.PutGrant(broker.Grant{ID: "grt_1", RequestID: "req_1", User: "alice", Target: "prod-db", Role: "rw",
				StartsAt: now.Add(-time.Hour), EndsAt: now.Add(time.Hour), Approvers: []string{"bob"}, State: broker.GrantActive}),
			tx.PutToken(broker.Token{ID: "tok_1", Hash: "ab12cd", User: "alice", Kind: "api", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}),
			tx.PutSession(broker.Session{ID: "ses_1", GrantID: "grt_1", User: "alice", Target: "prod-db", Role: "rw",
				Protocol: "postgres", State: broker.SessionClosed, StartedAt: now.Add(-time.Minute), Index: "select 1"}),
			tx.PutState("breakglass/drills", []byte(`[{"id":"drl_1"}]`)),
			tx.PutState("big", bytes.Repeat([]byte("x"), 300<<10)), // several chunks
		)
	})
	if err != nil {
		t.Fatal(err)
	}
	log := audit.NewLog(st)
	for i := range 5 {
		if _, err := log.Append(t.Context(), audit.Entry{Actor: "alice", Action: "grant.test", Target: "prod-db",
			Outcome: broker.OutcomeSuccess, Details: map[string]any{"i": i}}); err != nil {
			t.Fatal(err)
		}
	}
}

func takeBackup(t *testing.T, st broker.Store, ks keySet) (string, *backup.Manifest) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bak")
	m, err := backup.Write(t.Context(), backup.Options{Store: st, Driver: "sqlite", Keys: ks.files, Passphrase: pass, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return dir, m
}

// restoreFresh restores dir into a new SQLite store and data dir.
func restoreFresh(t *testing.T, dir string, passphrase []byte) (*sqlite.Store, string, *backup.Result, error) {
	t.Helper()
	target := t.TempDir()
	st := openSQLite(t, filepath.Join(target, "custos.db"))
	data := filepath.Join(target, "data")
	c, err := backup.Check(dir, passphrase)
	if err != nil {
		return st, data, nil, err
	}
	defer c.Close()
	res, err := backup.Restore(t.Context(), c, backup.RestoreOptions{Store: st, Keys: destKeys(data)})
	return st, data, res, err
}

type snapshot struct {
	Requests []broker.Request
	Grants   []broker.Grant
	Tokens   []broker.Token
	Sessions []broker.Session
	Audit    []broker.AuditRecord
	State    []byte
	Big      []byte
}

func snap(t *testing.T, st broker.Store) snapshot {
	t.Helper()
	var s snapshot
	err := st.View(t.Context(), func(tx broker.Tx) error {
		var err error
		s.Requests, _ = tx.ListRequests(broker.RequestFilter{})
		s.Grants, _ = tx.ListGrants(broker.GrantFilter{})
		s.Tokens, _ = tx.ListTokens("alice")
		s.Sessions, _ = tx.ListSessions(broker.SessionFilter{})
		s.Audit, _ = tx.ListAudit(broker.AuditFilter{})
		s.State, err = tx.GetState("breakglass/drills")
		if err == nil {
			s.Big, err = tx.GetState("big")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRoundTrip(t *testing.T) {
	src := openSQLite(t, filepath.Join(t.TempDir(), "src.db"))
	ks := newKeys(t, filepath.Join(t.TempDir(), "data"))
	populate(t, src)
	dir, m := takeBackup(t, src, ks)
	if m.Head.Seq != 5 {
		t.Fatalf("head seq %d, want 5", m.Head.Seq)
	}
	st, data, res, err := restoreFresh(t, dir, pass)
	if err != nil {
		t.Fatal(err)
	}
	if res.Head != m.Head {
		t.Errorf("restored head %+v, want %+v", res.Head, m.Head)
	}
	want, got := snap(t, src), snap(t, st)
	if !reflect.DeepEqual(want, got) {
		t.Errorf("restored store differs:\n got %+v\nwant %+v", got, want)
	}
	if got.Tokens[0].Hash != "ab12cd" || got.Sessions[0].Index != "select 1" {
		t.Errorf("token hash %q / session index %q not restored", got.Tokens[0].Hash, got.Sessions[0].Index)
	}
	// The restored chain goes on from the backup's head.
	rec, err := audit.NewLog(st).Append(t.Context(), audit.Entry{Actor: "system", Action: "restore.test", Outcome: broker.OutcomeSuccess})
	if err != nil || rec.Seq != 6 || rec.PrevHash != m.Head.Hash {
		t.Fatalf("append after restore: seq %d prev %s err %v", rec.Seq, rec.PrevHash, err)
	}
	for _, k := range destKeys(data) {
		orig := filepath.Join(filepath.Dir(ks.files[0].Path), filepath.Base(k.Path))
		a, errA := os.ReadFile(orig)
		b, errB := os.ReadFile(k.Path)
		if errors.Is(errA, os.ErrNotExist) {
			if errB == nil {
				t.Errorf("%s restored but the source had none", k.Name)
			}
			continue
		}
		if !bytes.Equal(a, b) {
			t.Errorf("key %s not restored byte for byte", k.Name)
		}
		if fi, err := os.Stat(k.Path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("key %s: mode %v, err %v", k.Name, fi.Mode(), err)
		}
	}
}

// An attacker who can write to the backup directory alters it; restore
// refuses before writing anything.
func TestRefusesAlteredBackup(t *testing.T) {
	src := openSQLite(t, filepath.Join(t.TempDir(), "src.db"))
	ks := newKeys(t, filepath.Join(t.TempDir(), "data"))
	populate(t, src)
	cases := []struct {
		name  string
		alter func(t *testing.T, dir string)
		want  error
	}{
		{"grant edited", func(t *testing.T, dir string) { flipByte(t, filepath.Join(dir, "grants.jsonl.enc"), 40) }, backup.ErrTampered},
		{"audit row edited", func(t *testing.T, dir string) { flipByte(t, filepath.Join(dir, "audit.jsonl.enc"), 100) }, backup.ErrTampered},
		{"audit cut short", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "audit.jsonl.enc")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)-20], 0o600)
		}, backup.ErrTampered},
		{"tables swapped", func(t *testing.T, dir string) {
			copyFile(t, filepath.Join(dir, "requests.jsonl.enc"), filepath.Join(dir, "grants.jsonl.enc"))
		}, backup.ErrTampered},
		{"manifest head edited", func(t *testing.T, dir string) {
			replaceIn(t, filepath.Join(dir, "manifest.json"), `"seq": 5`, `"seq": 4`)
		}, backup.ErrTampered},
		{"manifest hash edited to match an edited file", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "sessions.jsonl.enc")
			old := sha(t, p)
			flipByte(t, p, 60)
			replaceIn(t, filepath.Join(dir, "manifest.json"), old, sha(t, p))
		}, backup.ErrTampered},
		{"table removed", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "state.jsonl.enc")) }, backup.ErrTampered},
		{"file added", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "extra.jsonl"), []byte("{}\n"), 0o600)
		}, backup.ErrTampered},
		{"signature removed", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "manifest.sig")) }, backup.ErrTampered},
		{"keys replaced", func(t *testing.T, dir string) {
			other, _ := takeBackup(t, src, ks)
			copyFile(t, filepath.Join(other, "keys.enc"), filepath.Join(dir, "keys.enc"))
		}, backup.ErrTampered},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := takeBackup(t, src, ks)
			tc.alter(t, dir)
			st, data, _, err := restoreFresh(t, dir, pass)
			if !errors.Is(err, tc.want) {
				t.Fatalf("restore: %v, want %v", err, tc.want)
			}
			assertUntouched(t, st, data)
		})
	}
}

// A backup cut short at the end of the audit log is a valid chain; only
// the recorded head shows it. The insider here holds the passphrase and
// the signing key, decrypts the audit table, drops the last records,
// encrypts it again and signs the manifest again.
func TestDetectsTruncatedAudit(t *testing.T) {
	src := openSQLite(t, filepath.Join(t.TempDir(), "src.db"))
	ks := newKeys(t, filepath.Join(t.TempDir(), "data"))
	populate(t, src)
	dir, _ := takeBackup(t, src, ks)
	err := backup.ResealTable(dir, pass, "audit", func(b []byte) []byte {
		lines := bytes.SplitAfter(b, []byte("\n"))
		return bytes.Join(lines[:3], nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	st, data, _, err := restoreFresh(t, dir, pass)
	if !errors.Is(err, backup.ErrTampered) || !strings.Contains(err.Error(), "audit records are missing") {
		t.Fatalf("restore of a truncated backup: %v", err)
	}
	t.Log(err)
	assertUntouched(t, st, data)

	// The same insider editing a record instead breaks the chain.
	dir, _ = takeBackup(t, src, ks)
	if err := backup.ResealTable(dir, pass, "audit", func(b []byte) []byte {
		return bytes.Replace(b, []byte(`"actor":"alice"`), []byte(`"actor":"eve"`), 1)
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := restoreFresh(t, dir, pass); !errors.Is(err, backup.ErrTampered) || !strings.Contains(err.Error(), "hash mismatch") {
		t.Fatalf("restore of an edited audit record: %v", err)
	}
}

func TestWrongPassphrase(t *testing.T) {
	src := openSQLite(t, filepath.Join(t.TempDir(), "src.db"))
	ks := newKeys(t, filepath.Join(t.TempDir(), "data"))
	populate(t, src)
	dir, _ := takeBackup(t, src, ks)
	st, data, _, err := restoreFresh(t, dir, []byte("not the passphrase at all"))
	if !errors.Is(err, backup.ErrPassphrase) {
		t.Fatalf("restore: %v, want ErrPassphrase", err)
	}
	assertUntouched(t, st, data)
}

// No file of a backup holds a key in clear: not the key files as they
// are on disk, not their base64, not the raw key bytes inside them.
func TestNoClearKeyMaterial(t *testing.T) {
	src := openSQLite(t, filepath.Join(t.TempDir(), "src.db"))
	ks := newKeys(t, filepath.Join(t.TempDir(), "data"))
	populate(t, src)
	dir, _ := takeBackup(t, src, ks)
	var secrets [][]byte
	for _, k := range ks.files {
		if b, err := os.ReadFile(k.Path); err == nil {
			secrets = append(secrets, b, bytes.TrimSpace(b))
			if blk, _ := pem.Decode(b); blk != nil {
				secrets = append(secrets, blk.Bytes, []byte(base64.StdEncoding.EncodeToString(blk.Bytes)))
			}
		}
	}
	for _, raw := range [][]byte{ks.signing.Seed(), ks.wrap, ks.ca} {
		secrets = append(secrets, raw, []byte(base64.StdEncoding.EncodeToString(raw)), []byte(hex.EncodeToString(raw)),
			[]byte(base64.StdEncoding.EncodeToString(raw)[:40]))
	}
	// Nor the rows: the tables are encrypted too.
	secrets = append(secrets, []byte("INC-1"), []byte("prod-db"), []byte("select 1"), []byte("ab12cd"), []byte("grant.test"))
	ents, _ := os.ReadDir(dir)
	if len(ents) != 9 {
		t.Fatalf("backup has %d files, want 9", len(ents))
	}
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		for i, s := range secrets {
			if bytes.Contains(b, s) {
				t.Errorf("%s holds key material in clear (secret %d)", e.Name(), i)
			}
		}
		if fi, _ := e.Info(); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", e.Name(), fi.Mode().Perm())
		}
	}
}

func TestRefusesNonEmptyStore(t *testing.T) {
	src := openSQLite(t, filepath.Join(t.TempDir(), "src.db"))
	ks := newKeys(t, filepath.Join(t.TempDir(), "data"))
	populate(t, src)
	dir, _ := takeBackup(t, src, ks)
	c, err := backup.Check(dir, pass)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	t.Run("store", func(t *testing.T) {
		st := openSQLite(t, filepath.Join(t.TempDir(), "busy.db"))
		if err := st.Update(t.Context(), func(tx broker.Tx) error { return tx.PutState("k", []byte("v")) }); err != nil {
			t.Fatal(err)
		}
		data := filepath.Join(t.TempDir(), "data")
		_, err := backup.Restore(t.Context(), c, backup.RestoreOptions{Store: st, Keys: destKeys(data)})
		if !errors.Is(err, backup.ErrNotEmpty) {
			t.Fatalf("restore into a non-empty store: %v", err)
		}
		if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("keys written although the restore was refused")
		}
	})
	t.Run("key file", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "data")
		other := newKeys(t, data) // another broker's keys
		st := openSQLite(t, filepath.Join(t.TempDir(), "fresh.db"))
		_, err := backup.Restore(t.Context(), c, backup.RestoreOptions{Store: st, Keys: other.files})
		if err == nil || !strings.Contains(err.Error(), "--force") {
			t.Fatalf("restore over other key files: %v", err)
		}
		assertUntouched(t, st, "")
		res, err := backup.Restore(t.Context(), c, backup.RestoreOptions{Store: st, Keys: other.files, Force: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.MovedAside) != 3 {
			t.Errorf("moved aside %v, want 3 files", res.MovedAside)
		}
	})
}

func assertUntouched(t *testing.T, st broker.Store, data string) {
	t.Helper()
	err := st.View(context.Background(), func(tx broker.Tx) error {
		recs, err := tx.ListAudit(broker.AuditFilter{Limit: 1})
		if len(recs) > 0 {
			t.Errorf("store holds audit records after a refused restore")
		}
		rs, _ := tx.ListRequests(broker.RequestFilter{})
		if len(rs) > 0 {
			t.Errorf("store holds requests after a refused restore")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if data != "" {
		if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("data dir written after a refused restore")
		}
	}
}

func replaceIn(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%s does not contain %q", path, old)
	}
	if err := os.WriteFile(path, bytes.Replace(b, []byte(old), []byte(new), 1), 0o600); err != nil {
		t.Fatal(err)
	}
}

func sha(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256hex(b)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// The store inserts a restored audit record only where it continues the
// chain: a restore cannot graft records onto another chain or edit one.
func TestImportAuditContinuesChainOnly(t *testing.T) {
	src := openSQLite(t, filepath.Join(t.TempDir(), "src.db"))
	populate(t, src)
	var recs []broker.AuditRecord
	_ = src.View(t.Context(), func(tx broker.Tx) error {
		var err error
		recs, err = tx.ListAudit(broker.AuditFilter{})
		return err
	})
	edited := recs[0]
	edited.Actor = "mallory"
	type importer interface {
		ImportAudit(broker.AuditRecord) error
	}
	cases := []struct {
		name string
		recs []broker.AuditRecord
		ok   bool
	}{
		{"the chain in order", recs, true},
		{"starting past the genesis", recs[1:], false},
		{"a gap", append([]broker.AuditRecord{recs[0]}, recs[2:]...), false},
		{"an edited record", []broker.AuditRecord{edited}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dst := openSQLite(t, filepath.Join(t.TempDir(), "dst.db"))
			err := dst.Update(t.Context(), func(tx broker.Tx) error {
				for _, r := range tc.recs {
					if err := tx.(importer).ImportAudit(r); err != nil {
						return err
					}
				}
				return nil
			})
			if (err == nil) != tc.ok {
				t.Fatalf("import: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func flipByte(t *testing.T, path string, at int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[at%len(b)] ^= 0x01
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/audit/audittest"
	"github.com/custos-pam/custos/broker/store/postgres"
	"github.com/custos-pam/custos/broker/store/sqlite"
	"github.com/custos-pam/custos/deploy/devstack"
)

// checkpointSite is one combination of state store and recordings bucket,
// with the raw access an attacker holding the database (and, for the bad
// signature, the bucket) would have.
type checkpointSite struct {
	store     string // the config's store section
	recording string // extra config: the recording section, if any
	env       []string
	// open opens the state store and a raw handle on its database.
	open func(t *testing.T) (broker.Store, audittest.Execer)
	// dropGuards removes the triggers refusing UPDATE on the audit table.
	dropGuards string
	// putObject writes an object into the recordings bucket behind the
	// broker's back.
	putObject func(t *testing.T, key string, body []byte)
}

type sqlExec struct{ db *sql.DB }

func (s sqlExec) Exec(q string, args ...any) error { _, err := s.db.Exec(q, args...); return err }

type pgxExec struct{ c *pgx.Conn }

func (p pgxExec) Exec(q string, args ...any) error {
	_, err := p.c.Exec(context.Background(), q, args...)
	return err
}

// The attack audit checkpoints exist for, end to end with the real
// binary: someone with write access to the state store rewrites an audit
// record and recomputes every hash after it, so the chain alone verifies;
// `custos audit verify` (from the config, and through the running broker)
// names the record from the signed checkpoints in the recordings bucket,
// and reports a checkpoint signed with another key.
func TestAuditCheckpointsEndToEnd(t *testing.T) {
	t.Run("sqlite+local", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "custos.db")
		var dataDir string
		site := checkpointSite{
			store: fmt.Sprintf("{driver: sqlite, path: %q}", path),
			open: func(t *testing.T) (broker.Store, audittest.Execer) {
				s, err := sqlite.Open(t.Context(), path)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				return s, sqlExec{db}
			},
			dropGuards: "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete",
			putObject: func(t *testing.T, key string, body []byte) {
				p := filepath.Join(dataDir, "recordings", filepath.FromSlash(key))
				if err := os.WriteFile(p, body, 0o444); err != nil {
					t.Fatal(err)
				}
			},
		}
		runCheckpointSite(t, site, &dataDir)
	})
	t.Run("postgres+minio", func(t *testing.T) {
		pg := devstack.StartPostgres(t)
		dsn := pg.DSN(pg.CreateDatabase(t, "ckpt"))
		mio := devstack.StartMinIO(t)
		bucket := mio.NewLockedBucket(t)
		mc, err := mio.Client()
		if err != nil {
			t.Fatal(err)
		}
		site := checkpointSite{
			store: fmt.Sprintf("{driver: postgres, dsn: %q}", dsn),
			recording: fmt.Sprintf(`recording:
  store: s3
  s3: {endpoint: %q, bucket: %q, access_key: env:CUSTOS_E2E_S3_ACCESS, secret_key: env:CUSTOS_E2E_S3_SECRET, insecure: true}
`, mio.Endpoint, bucket),
			env: []string{"CUSTOS_E2E_S3_ACCESS=" + mio.AccessKey, "CUSTOS_E2E_S3_SECRET=" + mio.SecretKey},
			open: func(t *testing.T) (broker.Store, audittest.Execer) {
				s, err := postgres.Open(t.Context(), dsn)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				c, err := pgx.Connect(t.Context(), dsn)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close(context.Background()) })
				return s, pgxExec{c}
			},
			dropGuards: "DROP TRIGGER audit_no_update ON audit; DROP TRIGGER audit_no_delete ON audit",
			putObject: func(t *testing.T, key string, body []byte) {
				if _, err := mc.PutObject(t.Context(), bucket, key, bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
					t.Fatal(err)
				}
			},
		}
		runCheckpointSite(t, site, new(string))
	})
}

func runCheckpointSite(t *testing.T, site checkpointSite, dataDir *string) {
	dir := t.TempDir()
	*dataDir = filepath.Join(dir, "data")
	port := devstack.FreePort(t)
	cfg := filepath.Join(dir, "custos.yaml")
	body := fmt.Sprintf(e2eConfig, fmt.Sprintf("127.0.0.1:%d", port), *dataDir, site.store) +
		"audit: {checkpoint_interval: 1s}\n" + site.recording
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &brokerProc{t: t, cfg: cfg, url: fmt.Sprintf("http://127.0.0.1:%d", port), homes: map[string]string{},
		env: append([]string{"CUSTOS_E2E_PASSWORD=" + e2ePassword}, site.env...)}
	b.start()
	t.Cleanup(func() { b.stop(syscall.SIGTERM) })
	b.login("alice", "bob", "sam")

	// Decisions the attacker will want to change: a grant bob approved.
	req := decode[jsonRequest](t, b.ok("alice", "request", "demo-pg", "--role", "readonly", "--for", "30m", "--reason", "INC-7", "-o", "json"))
	b.ok("bob", "approve", req.ID)
	time.Sleep(1500 * time.Millisecond) // an interval checkpoint
	req2 := decode[jsonRequest](t, b.ok("alice", "request", "demo-pg", "--role", "readonly", "--for", "30m", "--reason", "INC-8", "-o", "json"))
	b.ok("bob", "deny", req2.ID, "--reason", "not now")
	b.stop(syscall.SIGTERM) // the shutdown checkpoint covers broker.stop

	out, errs, code := b.run("sam", "", "audit", "verify", "--config", cfg)
	if code != 0 || !strings.Contains(out, "audit chain intact") || !strings.Contains(out, "signed by a trusted key; newest covers record") {
		t.Fatalf("intact log: exit %d\n%s%s\nbroker log:\n%s", code, out, errs, b.logs)
	}
	rep := decode[audit.Report](t, b.ok("sam", "audit", "verify", "--config", cfg, "-o", "json"))
	// At least the interval checkpoint during the sleep and the shutdown
	// one; the newest covers the last record.
	if rep.Checkpoints == nil || rep.Checkpoints.Verified < 2 || rep.Checkpoints.Newest.Seq != int64(rep.Records) {
		t.Fatalf("checkpoints: %+v %+v", rep, rep.Checkpoints)
	}

	// Rewrite: the approval of the first request becomes a denial, and
	// every hash from it on is recomputed.
	st, db := site.open(t)
	var approval broker.AuditRecord
	err := st.View(t.Context(), func(tx broker.Tx) error {
		recs, err := tx.ListAudit(broker.AuditFilter{ActionPrefix: "request.approve"})
		for _, r := range recs {
			if r.Actor == "bob" && r.Outcome == broker.OutcomeSuccess && approval.Seq == 0 {
				approval = r
			}
		}
		return err
	})
	if err != nil || approval.Seq == 0 {
		t.Fatalf("bob's approval not found: %v", err)
	}
	if err := db.Exec(site.dropGuards); err != nil {
		t.Fatal(err)
	}
	audittest.Rewrite(t, st, db, approval.Seq, broker.OutcomeDenied, "not approved")
	if chain, err := audit.Verify(t.Context(), st); err != nil || !chain.OK {
		t.Fatalf("the chain alone should not see the rewrite: %+v, %v", chain, err)
	}
	st.Close()

	named := fmt.Sprintf("audit chain broken at record %d: record %d (id %s): hash ", approval.Seq, approval.Seq, approval.ID)
	out, errs, code = b.run("sam", "", "audit", "verify", "--config", cfg)
	if code != 6 || !strings.Contains(errs, named) || !strings.Contains(errs, "the record was altered and the hashes after it recomputed") ||
		!strings.Contains(out, fmt.Sprintf("audit chain broken at record %d", approval.Seq)) {
		t.Fatalf("verify --config after the rewrite: exit %d\n%s%s", code, out, errs)
	}

	// Through the running broker, with a forged checkpoint in the bucket.
	_, forger, _ := ed25519.GenerateKey(rand.Reader)
	forged := audit.Checkpoint{Format: audit.CheckpointFormat, Version: audit.CheckpointVersion, Seq: 1,
		Hash: strings.Repeat("0", 64), Time: time.Now().UTC(), Replica: "mallory", FromSeq: 0,
		Digests: []string{strings.Repeat("0", audit.DigestLen)}}
	fb, err := audit.SignCheckpoint(forged, keySigner{forger})
	if err != nil {
		t.Fatal(err)
	}
	site.putObject(t, audit.CheckpointDir+audit.CheckpointName(forged), fb)
	b.start()
	out, errs, code = b.run("sam", "", "audit", "verify")
	if code != 6 || !strings.Contains(errs, named) ||
		!strings.Contains(out, "checkpoint problem: checkpoint "+audit.CheckpointName(forged)+": checkpoint signature invalid") {
		t.Fatalf("verify through the broker: exit %d\n%s%s\nbroker log:\n%s", code, out, errs, b.logs)
	}
	t.Logf("custos audit verify, exit %d:\n%s%s", code, out, errs)
}

// keySigner signs with a bare Ed25519 key: a key that is not the broker's.
type keySigner struct{ k ed25519.PrivateKey }

func (s keySigner) Public() ed25519.PublicKey { return s.k.Public().(ed25519.PublicKey) }
func (s keySigner) Sign(m []byte) []byte      { return ed25519.Sign(s.k, m) }

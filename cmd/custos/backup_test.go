package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const backupPassphrase = "a long backup passphrase for the test"

// TestBackupRestoreAndDrill runs a broker on the real stack (Vault
// Transit-wrapped recordings in MinIO under Object Lock), records an SSH
// and a PostgreSQL session, runs a restore drill while the broker serves,
// then backs the stopped broker up, restores it into a fresh config and
// store, starts the restored broker and checks that grants, the audit
// chain and the recordings are there and verify.
func TestBackupRestoreAndDrill(t *testing.T) {
	st := startFullStack(t, stackOptions{})
	b := st.b
	b.env = append(b.env, "CUSTOS_BACKUP_PASSPHRASE="+backupPassphrase)

	// An SSH session and a PostgreSQL session, recorded.
	sshReq := decode[jsonRequest](t, b.ok("alice", "request", "demo-ssh", "--role", "ops", "--for", "30m", "--reason", "INC-21", "-o", "json"))
	b.ok("bob", "approve", sshReq.ID)
	if out, err := sshRun(t, st.alice, st.sshPort, "demo-ssh", "echo restored-$((6*7))"); err != nil || !strings.Contains(out, "restored-42") {
		t.Fatalf("ssh: %v %q\n%s", err, out, b.logs)
	}
	pgReq := decode[jsonRequest](t, b.ok("alice", "request", "demo-pg", "--role", "readonly", "--for", "30m", "--reason", "INC-22", "-o", "json"))
	pgGrant := decode[decided](t, b.ok("bob", "approve", pgReq.ID, "-o", "json")).Grant
	token := strings.TrimSpace(b.ok("alice", "db", "token", "demo-pg"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1",
		fmt.Sprintf("host=127.0.0.1 port=%d dbname=demo-pg user=alice sslmode=require", st.pgPort), "-c", "select 'backup-' || 6*7")
	cmd.Env = append(os.Environ(), "PGPASSWORD="+token, "PGCONNECT_TIMEOUT=10")
	if o, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(o), "backup-42") {
		t.Fatalf("psql: %v %q\n%s", err, o, b.logs)
	}
	sessions := waitSessions(t, b, 2)

	// A restore drill while the broker runs: backup now, restore onto a
	// scratch store, verify the chain and every recording.
	report := b.ok("sam", "drill", "restore", "--config", b.cfg, "--passphrase-env", "CUSTOS_BACKUP_PASSPHRASE")
	t.Logf("restore drill report:\n%s", report)
	for _, want := range []string{"PASSED", "RTO (restore to a verified store)", "RPO (backup age at drill start)",
		fmt.Sprintf("recordings: %d listed, %d verified intact, 0 failed", len(sessions), len(sessions)), "audit chain:", "ok=true"} {
		if !strings.Contains(report, want) {
			t.Errorf("drill report lacks %q", want)
		}
	}
	// The same onto a scratch PostgreSQL database: a SQLite broker's
	// backup restores across drivers.
	scratch := st.pg.DSN(st.pg.CreateDatabase(t, "scratch"))
	b.env = append(b.env, "CUSTOS_SCRATCH_DSN="+scratch)
	pgReport := b.ok("sam", "drill", "restore", "--config", b.cfg, "--passphrase-env", "CUSTOS_BACKUP_PASSPHRASE",
		"--scratch-dsn", "env:CUSTOS_SCRATCH_DSN", "-o", "json")
	pgDrill := decode[drillReport](t, pgReport)
	if pgDrill.Outcome != "passed" || pgDrill.ScratchDriver != "postgres" || pgDrill.RTO <= 0 || pgDrill.Recordings.Verified != len(sessions) {
		t.Errorf("drill onto PostgreSQL: %s", pgReport)
	}
	if strings.Contains(pgReport, scratch) {
		t.Error("the scratch DSN appears in the report")
	}

	// A backup copied into the bucket (under Object Lock), drilled from
	// there: the copy in the bucket restores and verifies.
	up := decode[struct {
		ID string `json:"id"`
	}](t, b.ok("sam", "backup", "--to-bucket", "--retain", "1h", "--config", b.cfg, "--passphrase-env", "CUSTOS_BACKUP_PASSPHRASE", "-o", "json"))
	bucketReport := b.ok("sam", "drill", "restore", "--config", b.cfg, "--passphrase-env", "CUSTOS_BACKUP_PASSPHRASE", "--from-bucket", up.ID)
	if !strings.Contains(bucketReport, "PASSED") || !strings.Contains(bucketReport, "copied from the recordings store") {
		t.Errorf("drill of the bucket copy:\n%s", bucketReport)
	}
	if _, errs, code := b.run("sam", "", "restore", "--from-bucket", "bak_nosuchbackup1", "--check", "--config", b.cfg,
		"--passphrase-env", "CUSTOS_BACKUP_PASSPHRASE"); code == 0 || !strings.Contains(errs, "no backup bak_nosuchbackup1") {
		t.Errorf("restore of a missing bucket backup: exit %d: %s", code, errs)
	}

	// It joins the drill schedule and the quarter's report.
	status := b.ok("sam", "drill", "status")
	t.Logf("drill status:\n%s", status)
	if !strings.Contains(status, "(restore)") || !strings.Contains(status, "passed") {
		t.Errorf("drill status does not list the restore drill:\n%s", status)
	}
	quarter := fmt.Sprintf("%dQ%d", time.Now().UTC().Year(), (int(time.Now().UTC().Month())-1)/3+1)
	if rep := b.ok("sam", "drill", "report", "--quarter", quarter); !strings.Contains(rep, "account (restore)") {
		t.Errorf("drill report does not list the restore drill:\n%s", rep)
	}
	if a := b.ok("sam", "audit", "list", "--action", "drill.restore"); !strings.Contains(a, "drill.restore") {
		t.Errorf("no drill.restore audit record:\n%s", a)
	}

	// The broker stops (its last records and checkpoint written); a
	// backup of it, restored into a fresh config, store and data dir.
	b.stop(syscall.SIGTERM)
	bak := filepath.Join(t.TempDir(), "bak")
	out := b.ok("sam", "backup", bak, "--config", b.cfg, "--passphrase-env", "CUSTOS_BACKUP_PASSPHRASE")
	t.Logf("backup:\n%s", out)
	orig, err := os.ReadFile(b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	fresh := t.TempDir()
	cfg2 := filepath.Join(fresh, "custos.yaml")
	body := strings.Replace(string(orig), "data_dir: "+st.dir+"/data", "data_dir: "+fresh+"/data", 1)
	body = strings.Replace(body, "path: "+st.dir+"/custos.db", "path: "+fresh+"/custos.db", 1)
	if body == string(orig) || !strings.Contains(body, fresh+"/custos.db") {
		t.Fatal("fresh config not rewritten")
	}
	if err := os.WriteFile(cfg2, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	out = b.ok("sam", "restore", bak, "--config", cfg2, "--passphrase-env", "CUSTOS_BACKUP_PASSPHRASE")
	t.Logf("restore:\n%s", out)
	if !strings.Contains(out, "audit chain verified up to the backup's head") || !strings.Contains(out, "recording_signing_key") {
		t.Errorf("restore output: %s", out)
	}
	// Restoring again over the now non-empty store is refused.
	if _, errs, code := b.run("sam", "", "restore", bak, "--config", cfg2, "--passphrase-env", "CUSTOS_BACKUP_PASSPHRASE"); code != 3 || !strings.Contains(errs, "not empty") {
		t.Errorf("second restore: exit %d: %s", code, errs)
	}

	// An altered backup: restore refuses it (exit 6) and writes nothing;
	// a drill of it fails and says why.
	bad := filepath.Join(t.TempDir(), "bad")
	if o, err := exec.Command("cp", "-r", bak, bad).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, o)
	}
	g, _ := os.ReadFile(filepath.Join(bad, "grants.jsonl.enc"))
	g[len(g)/2] ^= 1
	os.WriteFile(filepath.Join(bad, "grants.jsonl.enc"), g, 0o600)
	fresh3 := t.TempDir()
	cfg3 := filepath.Join(fresh3, "custos.yaml")
	os.WriteFile(cfg3, []byte(strings.ReplaceAll(body, fresh, fresh3)), 0o600)
	if _, errs, code := b.run("sam", "", "restore", bad, "--config", cfg3, "--passphrase-env", "CUSTOS_BACKUP_PASSPHRASE"); code != 6 || !strings.Contains(errs, "backup altered or incomplete: grants.jsonl.enc") {
		t.Errorf("restore of an altered backup: exit %d: %s", code, errs)
	}
	for _, p := range []string{filepath.Join(fresh3, "custos.db"), filepath.Join(fresh3, "data")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s written by a refused restore", p)
		}
	}
	drillOut, _, code := b.run("sam", "", "drill", "restore", "--config", b.cfg, "--passphrase-env", "CUSTOS_BACKUP_PASSPHRASE", "--from", bad)
	if code != 1 || !strings.Contains(drillOut, "FAILED") || !strings.Contains(drillOut, "backup altered or incomplete") {
		t.Errorf("drill of an altered backup: exit %d:\n%s", code, drillOut)
	}

	// The restored broker: the same grants, sessions and tokens (the CLI
	// logins still work), recordings and audit chain that verify.
	b2 := &brokerProc{t: t, cfg: cfg2, url: b.url, homes: b.homes, env: b.env}
	b2.start()
	t.Cleanup(func() { b2.stop(syscall.SIGTERM) })
	if g := getGrantJSON(t, b2, pgGrant.ID); !strings.Contains(g, pgGrant.ID) {
		t.Errorf("grant %s not restored: %s", pgGrant.ID, g)
	}
	restored := decode[[]session](t, b2.ok("sam", "sessions", "-o", "json"))
	if len(restored) != len(sessions) {
		t.Fatalf("restored broker lists %d sessions, want %d", len(restored), len(sessions))
	}
	for _, s := range restored {
		if v := b2.ok("sam", "verify", s.ID); !strings.Contains(v, "intact") || !strings.Contains(v, "COMPLIANCE") {
			t.Errorf("verify %s on the restored broker: %s", s.ID, v)
		}
	}
	if v := b2.ok("sam", "audit", "verify"); !strings.Contains(v, "audit chain intact") || strings.Contains(v, "problem") {
		t.Errorf("audit verify on the restored broker: %s", v)
	}
	if a := b2.ok("sam", "audit", "list", "--action", "drill.restore"); !strings.Contains(a, "drill.restore") {
		t.Errorf("the restored audit log lacks the drill record:\n%s", a)
	}
}

// drillReport is the JSON of custos drill restore -o json.
type drillReport struct {
	Outcome       string `json:"outcome"`
	ScratchDriver string `json:"scratch_driver"`
	RTO           int64  `json:"rto_ns"`
	Recordings    struct {
		Verified int `json:"verified"`
	} `json:"recordings"`
}

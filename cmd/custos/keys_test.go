package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/deploy/devstack"
)

// TestRotateSigningKeyEndToEnd: `custos keys rotate-signing` with the
// real binary. Audit checkpoints signed before the rotation still verify
// (the retired key is trusted for verification), and would not without
// the retired key; the broker signs new checkpoints with the new key;
// the rotation is in the audit log with both key IDs.
func TestRotateSigningKeyEndToEnd(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	port := devstack.FreePort(t)
	cfg := filepath.Join(dir, "custos.yaml")
	body := fmt.Sprintf(e2eConfig, fmt.Sprintf("127.0.0.1:%d", port), data, fmt.Sprintf("{driver: sqlite, path: %q}", filepath.Join(dir, "custos.db"))) +
		"audit: {checkpoint_interval: 1s}\n"
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &brokerProc{t: t, cfg: cfg, url: fmt.Sprintf("http://127.0.0.1:%d", port), homes: map[string]string{}}
	b.start()
	t.Cleanup(func() { b.stop(syscall.SIGTERM) })
	b.login("sam")
	b.stop(syscall.SIGTERM) // the shutdown checkpoint, signed with the first key

	verify := func() (string, int) {
		out, errs, code := b.run("sam", "", "audit", "verify", "--config", cfg)
		return out + errs, code
	}
	if out, code := verify(); code != 0 {
		t.Fatalf("before the rotation: exit %d\n%s", code, out)
	}
	out := b.ok("sam", "keys", "rotate-signing", "--config", cfg)
	if !strings.Contains(out, "recording signing key rotated: ed25519:") || !strings.Contains(out, "retired-signing-keys") {
		t.Fatalf("rotate-signing said:\n%s", out)
	}
	if out, code := verify(); code != 0 {
		t.Fatalf("checkpoints signed before the rotation no longer verify: exit %d\n%s", code, out)
	}
	// Without the retired key they would not: the attacker's test that
	// the retired key, and nothing else, carries the old checkpoints.
	retired := filepath.Join(data, "retired-signing-keys")
	aside := retired + ".aside"
	if err := os.Rename(retired, aside); err != nil {
		t.Fatal(err)
	}
	if out, code := verify(); code == 0 || !strings.Contains(out, "no trusted key verifies it") {
		t.Fatalf("without the retired key: exit %d\n%s", code, out)
	}
	if err := os.Rename(aside, retired); err != nil {
		t.Fatal(err)
	}

	b.start()
	b.stop(syscall.SIGTERM) // a checkpoint with the new key
	rep := decode[audit.Report](t, b.ok("sam", "audit", "verify", "--config", cfg, "-o", "json"))
	if !rep.OK || rep.Checkpoints == nil || rep.Checkpoints.Verified < 2 || len(rep.Checkpoints.Problems) != 0 {
		t.Fatalf("after restarting with the new key: %+v", rep.Checkpoints)
	}
	b.start()
	b.login("sam")
	recs := b.ok("sam", "audit", "list", "--action", "recording.signing_key.rotate", "-o", "json")
	if !strings.Contains(recs, `"old_key": "ed25519:`) || !strings.Contains(recs, `"new_key": "ed25519:`) {
		t.Fatalf("no audit record of the rotation: %s", recs)
	}
}

package app

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/store/sqlite"
	"github.com/custos-pam/custos/recorder/event"
)

// TestNewRecorderLocal: the default config records to the local store
// with key files created on first start, honours a session's retention,
// and refuses Vault encryption without a Vault client.
func TestNewRecorderLocal(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	state, err := sqlite.Open(ctx, filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { state.Close() })
	auditLog := audit.NewLog(state)
	c := &config.Config{}
	c.Listen.DataDir = filepath.Join(dir, "data")
	c.ApplyDefaults()
	if c.Recording.Store != "local" || c.Recording.Encryption != "local" {
		t.Fatalf("defaults: %+v", c.Recording)
	}
	r, err := NewRecorder(ctx, c, nil, RecorderDeps{Audit: auditLog, Index: broker.SessionIndex{Store: state}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, f := range []string{c.Recording.SigningKey, c.Recording.LocalKey} {
		fi, err := os.Stat(f)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, fi, err)
		}
	}
	h := event.Header{SessionID: "ses_cfg", GrantID: "grt_1", User: "alice", Target: "prod-db", Role: "rw",
		Protocol: "postgres", ClientAddr: "10.0.0.1:5000",
		Policy: event.Policy{Approvers: []string{"bob"}, Reason: "INC-9", GrantEndsAt: time.Now().Add(time.Hour),
			Retention: 30 * 24 * time.Hour, FailOpen: true, Parameters: "hash"}}
	w, err := r.Start(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	w.Query("SELECT 1")
	w.Close()
	dctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := r.Drain(dctx); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Verify(ctx, "ses_cfg")
	if err != nil || !rep.Intact || rep.Store != "local" {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	if d := rep.Retention.Until.Sub(rep.StartedAt); d < 30*24*time.Hour-time.Second || d > 30*24*time.Hour {
		t.Fatalf("per-target retention: %v", d)
	}
	if _, err := os.Stat(filepath.Join(c.Recording.Dir, "sessions")); err != nil {
		t.Fatalf("recordings not under recording.dir: %v", err)
	}

	c.Recording.Encryption = "vault"
	if _, err := NewRecorder(ctx, c, nil, RecorderDeps{Audit: auditLog}); err == nil {
		t.Fatal("vault encryption without a Vault client accepted")
	}
}

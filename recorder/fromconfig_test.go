package recorder

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/recorder/event"
)

func TestFromConfigLocal(t *testing.T) {
	ctx := context.Background()
	env := newEnv(t, nil)
	c := &config.Config{}
	c.Listen.DataDir = filepath.Join(env.dir, "data")
	c.ApplyDefaults()
	if c.Recording.Store != "local" || c.Recording.Encryption != "local" {
		t.Fatalf("defaults: %+v", c.Recording)
	}
	r, err := FromConfig(ctx, c, nil, Deps{Audit: env.audit, Index: StoreIndex(env.state)})
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
	target := config.Target{Name: "prod-db", Kind: "postgres",
		Recording: config.TargetRecording{Retention: config.Duration(30 * 24 * time.Hour), FailOpen: true},
		Postgres:  config.TargetPostgres{Parameters: "hash"}}
	g := broker.Grant{ID: "grt_1", User: "alice", Role: "rw", Approvers: []string{"bob"}, Reason: "INC-9", EndsAt: time.Now().Add(time.Hour)}
	h := event.Header{SessionID: "ses_cfg", GrantID: g.ID, User: g.User, Target: target.Name, Role: g.Role,
		Protocol: target.Kind, ClientAddr: "10.0.0.1:5000",
		Policy: event.Policy{Approvers: g.Approvers, Reason: g.Reason, GrantEndsAt: g.EndsAt,
			Retention: target.Recording.Retention.D(), FailOpen: target.Recording.FailOpen, Parameters: target.Postgres.Parameters}}
	w, err := r.Start(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	w.Query("SELECT 1")
	w.Close()
	drain(t, r)
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
	if _, err := FromConfig(ctx, c, nil, Deps{Audit: env.audit}); err == nil {
		t.Fatal("vault encryption without a Vault client accepted")
	}
}

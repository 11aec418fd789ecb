package vault

import (
	"context"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
)

// A broker killed mid-session never ends the session's own login. When
// it starts again, the login of a session the store lists as over
// (the recorder closed it as interrupted) is revoked while the grant goes
// on; a session listed as live (on another replica) or not listed yet
// (starting) keeps its login.
func TestRestartEndsLoginOfSessionThatIsOver(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c1, err := New(e.cfg.Vault, e.log)
	if err != nil {
		t.Fatal(err)
	}
	first, err := NewIssuer(Options{Client: c1, Config: e.cfg, Store: e.store, Audit: e.audit, Log: e.log})
	if err != nil {
		t.Fatal(err)
	}
	g := e.grant(t, "dave", "pg1", "rw", time.Minute)
	leases := map[string]string{}
	for _, id := range []string{"ses_over", "ses_live", "ses_new"} {
		l, err := first.ForSession(ctx, g, id)
		if err != nil {
			t.Fatal(err)
		}
		leases[id] = l.LeaseID
	}
	idx := broker.SessionIndex{Store: e.store}
	for id, state := range map[string]broker.SessionState{"ses_over": broker.SessionInterrupted, "ses_live": broker.SessionLive} {
		if err := idx.PutSession(ctx, broker.Session{ID: id, GrantID: g.ID, User: "dave", Target: "pg1", Role: "rw",
			Protocol: "postgres", StartedAt: time.Now(), State: state}); err != nil {
			t.Fatal(err)
		}
	}
	if ok, _ := e.leaseAlive(t, leases["ses_over"]); !ok {
		t.Fatal("lease gone before the restart; the test proves nothing")
	}

	e.start(t, e.cfg)
	e.waitLeaseGone(t, leases["ses_over"], 3*time.Second)
	time.Sleep(300 * time.Millisecond)
	for _, id := range []string{"ses_live", "ses_new"} {
		if ok, _ := e.leaseAlive(t, leases[id]); !ok {
			t.Errorf("the login of %s was revoked", id)
		}
	}
}

package vault

import (
	"context"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
)

// An approved extension (the grant's active event with a later end)
// renews the grant's login in Vault to the new end, and its lease record
// with it, so neither Vault nor the sweep ends it at the old end; the
// per-grant token is renewed to the new end, and no further.
func TestPostgresExtendRenewsLogin(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	g := e.grant(t, "alice", "pg1", "readonly", time.Minute)
	lease, err := e.issuer.ForSession(ctx, g, "ses_one")
	if err != nil {
		t.Fatal(err)
	}
	// A per-session login (role rw) on another grant, extended too.
	g2 := e.grant(t, "alice", "pg1", "rw", time.Minute)
	own, err := e.issuer.ForSession(ctx, g2, "ses_rw")
	if err != nil || own.SessionID != "ses_rw" {
		t.Fatalf("per-session login: %+v %v", own, err)
	}
	if _, exp := e.leaseAlive(t, lease.LeaseID); exp.After(g.EndsAt.Add(endGrace + time.Second)) {
		t.Fatalf("lease expires %v, more than the grace after the grant's end %v", exp, g.EndsAt)
	}

	oldEnd := g.EndsAt
	for _, gr := range []*broker.Grant{&g, &g2} {
		gr.EndsAt = gr.EndsAt.Add(5 * time.Minute)
		if err := e.store.Update(ctx, func(tx broker.Tx) error {
			tx.NotifyGrant(broker.GrantEvent{GrantID: gr.ID, State: broker.GrantActive, Reason: "grant extended"})
			return tx.PutGrant(*gr)
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []struct {
		id  string
		end time.Time
	}{{lease.LeaseID, g.EndsAt}, {own.LeaseID, g2.EndsAt}} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			alive, exp := e.leaseAlive(t, l.id)
			if alive && exp.After(oldEnd.Add(4*time.Minute)) {
				if exp.After(l.end.Add(endGrace + time.Second)) {
					t.Fatalf("lease renewed to %v, past the grant's new end %v", exp, l.end)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("lease %s not renewed to the new end (alive %v, expires %v)\n%s", l.id, alive, exp, e.logs)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// The record is written after Vault renews the login, so it may trail
	// what the loop above saw by a moment.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		recs := e.issuer.records(func(r leaseRecord) bool { return r.LeaseID == lease.LeaseID })
		if len(recs) == 1 && recs[0].GrantEnd.Equal(g.EndsAt.UTC()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lease record after the extension: %+v", recs)
		}
	}
	again, err := e.issuer.ForSession(ctx, g, "ses_two")
	if err != nil || again.LeaseID != lease.LeaseID {
		t.Fatalf("a new session after the extension: %v %v (want the same login)", again.LeaseID, err)
	}

	// The per-grant token was renewed with it, to the new end (and the grace) and no further.
	e.issuer.mu.Lock()
	tok := e.issuer.grants[g.ID].shared.token
	e.issuer.mu.Unlock()
	lk, err := e.root.Auth().Token().Lookup(tok)
	if err != nil {
		t.Fatal(err)
	}
	ttl, _ := lk.TokenTTL()
	if end := time.Now().Add(ttl); end.Before(oldEnd.Add(4*time.Minute)) || end.After(g.EndsAt.Add(endGrace+2*time.Second)) {
		t.Fatalf("per-grant token expires %v; want the grant's new end %v", end, g.EndsAt)
	}
}

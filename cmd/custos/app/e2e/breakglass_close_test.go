package e2e_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/breakglass"
	"github.com/custos-pam/custos/recorder"
	"github.com/custos-pam/custos/recorder/event"
)

// An open account is used through the real PostgreSQL proxy and the
// session is recorded; at close the grant ends the live session, Vault
// rotates the password, the old one no longer logs in and the new one
// (read from Vault) does, and the account is sealed again.
func TestOpenSessionRecordedAndRotatedAtClose(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := e.ctx
	user, oldPW := e.staticCreds("breakglass")
	if err := e.login(user, oldPW); err != nil {
		t.Fatalf("the break-glass login does not work before the test: %v", err)
	}
	u := e.open("pg-admin")

	c, err := e.viaProxy("sam", "demo-pg")
	if err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	var who string
	if err := c.QueryRow(ctx, "SELECT current_user || ' ' || 'break-glass-marker'").Scan(&who); err != nil {
		t.Fatal(err)
	}
	if who != user+" break-glass-marker" {
		t.Fatalf("upstream user %q, want the break-glass account %s", who, user)
	}
	// A second session stays open across the close.
	live, err := e.viaProxy("sam", "demo-pg")
	if err != nil {
		t.Fatal(err)
	}
	c.Close(ctx)

	v, err := e.svc.Close(ctx, "sam", "pg-admin", "primary back")
	if err != nil {
		t.Fatal(err)
	}
	if v.State != breakglass.StateSealed || v.LastVerification == nil {
		t.Fatalf("after close: %s %+v (error %q)", v.State, v.LastVerification, v.LastRotationError)
	}
	lv := v.LastVerification
	if !lv.Rotated || !lv.OldRejected || !lv.NewAccepted || lv.Username != user {
		t.Errorf("verification %+v", lv)
	}
	// The live session was ended by the grant's end.
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if err := live.Ping(qctx); err == nil {
		t.Error("a session through the proxy survived the close")
	}
	cancel()
	if err := e.login(user, oldPW); err == nil {
		t.Fatal("the old password still logs in after close")
	}
	_, newPW := e.staticCreds("breakglass")
	if newPW == oldPW {
		t.Fatal("Vault still has the old password")
	}
	if err := e.login(user, newPW); err != nil {
		t.Fatalf("the new password from Vault does not log in: %v", err)
	}
	if _, err := e.viaProxy("sam", "demo-pg"); err == nil {
		t.Fatal("connected through the proxy after close")
	}
	g, err := e.acc.GetGrant(ctx, u.GrantID)
	if err != nil || g.State != broker.GrantRevoked {
		t.Errorf("grant after close: %+v %v", g, err)
	}

	// The session is in the index and its recording holds the statement.
	// The client saw its session end before the proxy finished tearing it
	// down: wait until both sessions are over in the index, then until
	// the recorder stored them.
	var sessions []broker.Session
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err := e.st.View(ctx, func(tx broker.Tx) error {
			var err error
			sessions, err = tx.ListSessions(broker.SessionFilter{GrantID: u.GrantID})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(sessions, func(s broker.Session) bool { return s.State == broker.SessionLive }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a session of the closed account still live in the index: %+v", sessions)
		}
	}
	if err := e.rec.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if len(sessions) != 2 {
		t.Fatalf("%d sessions recorded for the break-glass grant, want 2", len(sessions))
	}
	var found bool
	for _, s := range sessions {
		rec, err := e.rec.Open(ctx, s.ID, recorder.Access{Actor: "dave", Purpose: "test"})
		if err != nil {
			t.Fatal(err)
		}
		h := rec.Header()
		if h.Account != user || h.User != "sam" || h.Target != "demo-pg" || h.Role != "bg" {
			t.Errorf("recording header %+v", h)
		}
		if strings.Join(h.Policy.Approvers, ",") != "sam,carol" {
			t.Errorf("recording names approvers %v, want the custodians", h.Policy.Approvers)
		}
		for ev, err := range rec.Events(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			if (ev.Kind == event.KindPGQuery || ev.Kind == event.KindPGParse) && strings.Contains(ev.Text, "break-glass-marker") {
				found = true
			}
		}
	}
	if !found {
		t.Error("no recording holds the statement run through the break-glass grant")
	}
	for _, a := range []string{"breakglass.close", "breakglass.rotate", "breakglass.reseal", "grant.revoke"} {
		if len(e.auditActions(a)) == 0 {
			t.Errorf("no %s audit record", a)
		}
	}
	e.waitNotice("pg-admin rotated and resealed", "old one refused")
	e.assertNoSecret(oldPW)
	e.assertNoSecret(newPW)
}

package e2e_test

import (
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/breakglass"
)

// A broker restarted while an account is open still closes it when its
// window ends and rotates it: the state is in the store, not in memory.
func TestRestartWhileOpenClosesAndRotatesOnTime(t *testing.T) {
	e := newEnv(t, envOptions{accounts: pgAccount(", max_open: 4s")})
	user, oldPW := e.staticCreds("breakglass")
	u := e.open("pg-admin")
	if err := e.login(user, oldPW); err != nil {
		t.Fatalf("the password is not the one Vault had before the open: %v", err)
	}
	// The broker goes down while the account is open, and a new one
	// starts on the same store (a restart, or another replica).
	e.stopSvc()
	time.Sleep(time.Second)
	e.restart()

	v := e.waitState("pg-admin", breakglass.StateSealed, 15*time.Second)
	closed := v.LastUnseal
	if closed == nil || closed.ID != u.ID || closed.ClosedBy != "system" || !strings.Contains(closed.CloseReason, "open window") {
		t.Fatalf("last unseal %+v", closed)
	}
	if late := closed.ClosedAt.Sub(u.OpenUntil); late < 0 || late > 2*time.Second {
		t.Errorf("closed %s after the window ended, want within 2s", late)
	}
	if v.LastVerification == nil || !v.LastVerification.OldRejected || !v.LastVerification.NewAccepted {
		t.Errorf("verification %+v", v.LastVerification)
	}
	if err := e.login(user, oldPW); err == nil {
		t.Fatal("the old password still logs in after the restarted broker closed the account")
	}
	_, newPW := e.staticCreds("breakglass")
	if err := e.login(user, newPW); err != nil {
		t.Fatalf("new password: %v", err)
	}
	g, err := e.acc.GetGrant(e.ctx, u.GrantID)
	if err != nil || g.State == broker.GrantActive {
		t.Errorf("grant after the window: %+v %v", g, err)
	}
	if n := len(e.auditActions("breakglass.unseal.out_of_band")); n != 0 {
		t.Errorf("a one-second restart counted as an out-of-band unseal (%d records)", n)
	}
}

// A broker that was down longer than the offline window rotates every
// account at start, records an out-of-band unseal and asks the custodians
// what happened; their answer is recorded.
func TestOutageRotatesAsOutOfBandUnseal(t *testing.T) {
	e := newEnv(t, envOptions{accounts: pgAccount(", offline_window: 10m"), noStart: true})
	// A broker ran two hours ago; custodians read the password from Vault
	// directly meanwhile.
	e.start()
	e.stopSvc()
	user, oobPW := e.staticCreds("breakglass")
	if err := e.login(user, oobPW); err != nil {
		t.Fatal(err)
	}
	e.clock.Set(2 * time.Hour)
	e.start()

	// The start claimed the rotation before it counted as started.
	v := e.waitState("pg-admin", breakglass.StateSealed, 15*time.Second)
	if v.LastVerification == nil || !v.LastRotation.After(time.Now().Add(time.Hour)) {
		t.Fatalf("sealed without the out-of-band rotation: %+v", v.Account)
	}
	if err := e.login(user, oobPW); err == nil {
		t.Fatal("the password read out of band still logs in after the outage")
	}
	if v.OutOfBand == nil || v.OutOfBand.DownUntil.Sub(v.OutOfBand.DownFrom) < 2*time.Hour-time.Minute {
		t.Errorf("out-of-band record %+v", v.OutOfBand)
	}
	recs := e.auditActions("breakglass.unseal.out_of_band")
	if len(recs) != 1 || recs[0].Actor != "system" {
		t.Fatalf("out-of-band audit: %+v", recs)
	}
	e.waitNotice("unavailable", "pg-admin", "custos breakglass report pg-admin")

	if _, err := e.svc.ReportOutOfBand(e.ctx, "alice", "pg-admin", "INC-7", "x"); code(t, err) != "not_custodian" {
		t.Errorf("report by a non-custodian: %v", err)
	}
	v, err := e.svc.ReportOutOfBand(e.ctx, "carol", "pg-admin", "INC-7", "read it during the outage to restart replication")
	if err != nil {
		t.Fatal(err)
	}
	if v.OutOfBand.Incident != "INC-7" || v.OutOfBand.ReportedBy != "carol" {
		t.Errorf("report %+v", v.OutOfBand)
	}
	outcomes := map[string]int{}
	for _, r := range e.auditActions("breakglass.unseal.out_of_band.report") {
		outcomes[r.Outcome]++
	}
	if outcomes[broker.OutcomeSuccess] != 1 || outcomes[broker.OutcomeDenied] != 1 {
		t.Errorf("report audit outcomes %v, want one success and one denial", outcomes)
	}
}

package e2e_test

import (
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/breakglass"
)

func code(t *testing.T, err error) string {
	t.Helper()
	e, ok := breakglass.AsError(err)
	if !ok {
		t.Fatalf("want a refusal, got %v", err)
	}
	return e.Code
}

// One custodian cannot open a 2-of-N account alone nor confirm twice; a
// non-custodian (even a security admin) cannot confirm; a confirmation
// needs the custodian's password and a fresh TOTP code; the second
// distinct custodian opens it as a grant for the one who asked.
func TestDualControl(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := e.ctx
	if _, err := e.svc.Unseal(ctx, "alice", breakglass.UnsealRequest{Account: "pg-admin", Reason: "r", Incident: "INC-1", Factor: e.factor("alice")}); code(t, err) != "not_custodian" {
		t.Errorf("non-custodian unseal: %v", err)
	}
	if _, err := e.svc.Unseal(ctx, "sam", breakglass.UnsealRequest{Account: "pg-admin", Reason: "primary down", Factor: e.factor("sam")}); code(t, err) != "reason_required" {
		t.Errorf("unseal without incident: %v", err)
	}
	f := e.factor("sam")
	f.TOTP = ""
	if _, err := e.svc.Unseal(ctx, "sam", breakglass.UnsealRequest{Account: "pg-admin", Reason: "primary down", Incident: "INC-1", Factor: f}); code(t, err) != "second_factor_required" {
		t.Errorf("unseal without TOTP: %v", err)
	}
	u, err := e.svc.Unseal(ctx, "sam", breakglass.UnsealRequest{Account: "pg-admin", Reason: "primary down", Incident: "INC-1", Factor: e.factor("sam")})
	if err != nil {
		t.Fatal(err)
	}
	if u.Outcome != breakglass.UnsealPending || len(u.Confirmations) != 1 || u.Required != 2 {
		t.Fatalf("after the request: %+v", u)
	}
	if u.Confirmations[0].SecondFactor != "password+totp" {
		t.Errorf("second factor recorded as %q", u.Confirmations[0].SecondFactor)
	}
	// Sam again: refused, with a valid fresh factor.
	if _, err := e.svc.Confirm(ctx, "sam", u.ID, e.factor("sam")); code(t, err) != "already_confirmed" {
		t.Errorf("second confirmation by sam: %v", err)
	}
	// A security admin who is no custodian, and a DBA: refused.
	for _, who := range []string{"dave", "alice"} {
		if _, err := e.svc.Confirm(ctx, who, u.ID, e.factor(who)); code(t, err) != "not_custodian" {
			t.Errorf("confirmation by %s: %v", who, err)
		}
	}
	// Carol with a wrong code, a replayed code and a wrong password.
	bad := e.factor("carol")
	bad.TOTP = "000000"
	if _, err := e.svc.Confirm(ctx, "carol", u.ID, bad); code(t, err) != "second_factor_failed" {
		t.Errorf("confirmation with a wrong code: %v", err)
	}
	bad = e.factor("carol")
	bad.Password = "guess"
	if _, err := e.svc.Confirm(ctx, "carol", u.ID, bad); code(t, err) != "second_factor_failed" {
		t.Errorf("confirmation with a wrong password: %v", err)
	}
	v := e.status("pg-admin")
	if v.State != breakglass.StateUnsealRequested {
		t.Fatalf("account is %s after refused confirmations", v.State)
	}
	if _, err := e.acc.ActiveGrant(ctx, "sam", "demo-pg"); err == nil {
		t.Fatal("sam has a grant with one confirmation")
	}
	if _, err := e.viaProxy("sam", "demo-pg"); err == nil {
		t.Fatal("sam connected through the proxy with one confirmation")
	}
	// An ordinary request for the break-glass role is refused.
	_, err = e.acc.Create(ctx, "alice", access.NewRequest{Target: "demo-pg", Role: "bg", Duration: time.Hour, Reason: "x"})
	if ae, ok := broker.AsError(err); !ok || ae.Code != "breakglass_role" {
		t.Errorf("ordinary request for the break-glass role: %v", err)
	}

	good := e.factor("carol")
	u, err = e.svc.Confirm(ctx, "carol", u.ID, good)
	if err != nil {
		t.Fatal(err)
	}
	if u.Outcome != breakglass.UnsealOpened || u.GrantID == "" || strings.Join(u.Custodians(), ",") != "sam,carol" {
		t.Fatalf("after carol: %+v", u)
	}
	// The same code again (a replay) is refused even for another unseal.
	if _, err := e.svc.Confirm(ctx, "carol", u.ID, good); err == nil {
		t.Error("confirmation of an open account accepted")
	}
	g, err := e.acc.ActiveGrant(ctx, "sam", "demo-pg")
	if err != nil {
		t.Fatal(err)
	}
	if g.ID != u.GrantID || g.BreakGlass != "pg-admin" || g.Role != "bg" || !g.EndsAt.Equal(u.OpenUntil) {
		t.Errorf("grant %+v for unseal %+v", g, u)
	}
	if _, err := e.acc.ActiveGrant(ctx, "carol", "demo-pg"); err == nil {
		t.Error("the confirming custodian got a grant too")
	}
	if d := u.OpenUntil.Sub(u.OpenedAt); d != time.Hour {
		t.Errorf("open for %s, want the default max_open 1h", d)
	}

	// Every refusal and transition is in the audit log.
	want := map[string]int{}
	for _, r := range e.auditActions("breakglass.") {
		want[r.Action+" "+r.Outcome]++
	}
	for k, n := range map[string]int{
		"breakglass.unseal denied": 3, "breakglass.unseal success": 1, "breakglass.unseal.confirm denied": 5,
		"breakglass.unseal.confirm success": 1, "breakglass.open success": 1,
	} {
		if want[k] < n {
			t.Errorf("audit: %d × %s, want at least %d (have %v)", want[k], k, n, want)
		}
	}
	e.waitNotice("pg-admin", "requested by sam", "INC-1", "custos breakglass confirm "+u.ID)
	e.waitNotice("pg-admin open for sam", "sam, carol")
}

// An account allowed to open with one custodian does, and says so loudly.
func TestSingleCustodian(t *testing.T) {
	e := newEnv(t, envOptions{accounts: pgAccount(", required: 1, single_custodian: true")})
	u, err := e.svc.Unseal(e.ctx, "erin", breakglass.UnsealRequest{Account: "pg-admin", Reason: "nobody else awake", Incident: "INC-9", Factor: e.factor("erin")})
	if err != nil {
		t.Fatal(err)
	}
	if u.Outcome != breakglass.UnsealOpened || !u.SingleCustodian {
		t.Fatalf("single-custodian unseal: %+v", u)
	}
	e.waitNotice(":rotating_light: SINGLE-CUSTODIAN", "pg-admin open for erin")
	var found bool
	for _, r := range e.auditActions("breakglass.open") {
		found = found || strings.Contains(string(r.Details), `"single_custodian":true`)
	}
	if !found {
		t.Error("the open is not audited as single-custodian")
	}
}

// An unseal short of confirmations lapses and leaves the account sealed;
// closing a pending unseal cancels it without rotating.
func TestUnsealExpiresAndCancels(t *testing.T) {
	e := newEnv(t, envOptions{accounts: pgAccount(", confirm_within: 1s")})
	u, err := e.svc.Unseal(e.ctx, "sam", breakglass.UnsealRequest{Account: "pg-admin", Reason: "r", Incident: "INC-2", Factor: e.factor("sam")})
	if err != nil {
		t.Fatal(err)
	}
	e.waitState("pg-admin", breakglass.StateSealed, 5*time.Second)
	if _, err := e.svc.Confirm(e.ctx, "carol", u.ID, e.factor("carol")); code(t, err) != "not_pending" {
		t.Errorf("confirming a lapsed unseal: %v", err)
	}
	if v := e.status("pg-admin"); v.LastUnseal == nil || v.LastUnseal.Outcome != breakglass.UnsealExpired {
		t.Errorf("last unseal %+v", v.LastUnseal)
	}
	if len(e.auditActions("breakglass.unseal.expire")) != 1 {
		t.Error("expiry not audited")
	}
	_, pw := e.staticCreds("breakglass")
	if _, err := e.svc.Unseal(e.ctx, "sam", breakglass.UnsealRequest{Account: "pg-admin", Reason: "r", Incident: "INC-3", Factor: e.factor("sam")}); err != nil {
		t.Fatal(err)
	}
	v, err := e.svc.Close(e.ctx, "erin", "pg-admin", "false alarm")
	if err != nil {
		t.Fatal(err)
	}
	if v.State != breakglass.StateSealed || v.LastUnseal.Outcome != breakglass.UnsealCancelled {
		t.Errorf("after cancel: %s %+v", v.State, v.LastUnseal)
	}
	if _, pw2 := e.staticCreds("breakglass"); pw2 != pw {
		t.Error("a cancelled unseal rotated the password: nothing was exposed")
	}
	if _, err := e.svc.Close(e.ctx, "alice", "pg-admin", ""); code(t, err) != "forbidden" {
		t.Errorf("close by a non-custodian: %v", err)
	}
	_ = broker.OutcomeSuccess
}

package e2e_test

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/breakglass"
	"github.com/custos-pam/custos/deploy/devstack"
)

// Before a drill is due the custodians are reminded; once it is overdue
// /metrics shows it and the security channel is told, once per due date
// (and again daily); a drill clears it.
func TestOverdueDrillOnMetricsAndSlack(t *testing.T) {
	e := newEnv(t, envOptions{accounts: pgAccount(`, drill: {schedule: quarterly, weekday: tue, remind_before: 72h}`)})
	due := e.status("pg-admin").Drill
	if due.Overdue || due.NextDue.IsZero() || due.NextDue.Weekday() != time.Tuesday {
		t.Fatalf("a new account's drill: %+v", due)
	}
	overdueLine := `custos_breakglass_drill_overdue{account="pg-admin"} `
	if m := e.scrape(); !strings.Contains(m, overdueLine+"0") {
		t.Errorf("not due yet, /metrics:\n%s", grepLines(m, "drill_overdue"))
	}
	// Two days before it is due: a reminder, not overdue.
	e.clock.Set(time.Until(due.NextDue.Add(-48 * time.Hour)))
	e.waitNotice("drill of pg-admin is due", "custos drill run pg-admin")
	if m := e.scrape(); !strings.Contains(m, overdueLine+"0") {
		t.Errorf("a reminded drill shows overdue:\n%s", grepLines(m, "drill_overdue"))
	}
	// An hour past due: overdue on /metrics and in Slack.
	e.clock.Set(time.Until(due.NextDue.Add(time.Hour)))
	e.waitNotice("drill of pg-admin is OVERDUE", due.NextDue.Format(time.RFC3339))
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(e.scrape(), overdueLine+"1") {
		if time.Now().After(deadline) {
			t.Fatalf("overdue not on /metrics:\n%s", grepLines(e.scrape(), "drill_overdue"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if v := e.status("pg-admin"); !v.Drill.Overdue {
		t.Errorf("status %+v", v.Drill)
	}
	time.Sleep(500 * time.Millisecond) // several sweeps
	count := func(sub string) int {
		n := 0
		for _, s := range e.notices() {
			if strings.Contains(s, sub) {
				n++
			}
		}
		return n
	}
	if n := count("OVERDUE"); n != 1 {
		t.Errorf("%d overdue notices, want 1 per due date", n)
	}
	if n := len(e.auditActions("breakglass.drill.overdue")); n != 1 {
		t.Errorf("%d overdue audit records", n)
	}
	// A day later it is announced again.
	e.clock.Set(time.Until(due.NextDue.Add(26 * time.Hour)))
	deadline = time.Now().Add(5 * time.Second)
	for count("OVERDUE") < 2 {
		if time.Now().After(deadline) {
			t.Fatal("overdue not announced again after a day")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Running the drill clears it.
	if d := e.runDrill("pg-admin"); d.Outcome != breakglass.DrillPassed {
		t.Fatalf("drill %+v", d)
	}
	deadline = time.Now().Add(5 * time.Second)
	for !strings.Contains(e.scrape(), overdueLine+"0") {
		if time.Now().After(deadline) {
			t.Fatalf("overdue not cleared by the drill:\n%s", grepLines(e.scrape(), "drill_overdue"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if next := e.status("pg-admin").Drill.NextDue; !next.After(due.NextDue) {
		t.Errorf("next due %s not after %s", next, due.NextDue)
	}
}

// switchProxy forwards TCP to a backend until it is switched off, which
// also cuts connections already open.
type switchProxy struct {
	ln      net.Listener
	backend string
	mu      sync.Mutex
	down    bool
	conns   map[net.Conn]bool
}

func newSwitchProxy(t *testing.T, backend string) *switchProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &switchProxy{ln: ln, backend: backend, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.set(true) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *switchProxy) serve(c net.Conn) {
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.conns[c] = true
	p.mu.Unlock()
	up, err := net.Dial("tcp", p.backend)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[up] = true
	p.mu.Unlock()
	go func() { _, _ = io.Copy(up, c); up.Close() }()
	_, _ = io.Copy(c, up)
	c.Close()
}

func (p *switchProxy) set(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
		}
		p.conns = map[net.Conn]bool{}
	}
}

// When rotation fails the account is compromised-until-rotated: alerts
// repeat, it cannot be unsealed, and once Vault answers again the retry
// rotates and reseals it.
func TestRotationFailureCompromisedUntilRotated(t *testing.T) {
	// The broker reaches Vault through a switch.
	proxy := newSwitchProxy(t, strings.TrimPrefix(devstack.StartVault(t).Addr, "http://"))
	e2 := newEnv(t, envOptions{accounts: pgAccount(", alert_every: 1s"), vaultAddr: "http://" + proxy.ln.Addr().String()})
	user, oldPW := e2.staticCreds("breakglass")
	e2.open("pg-admin")

	proxy.set(true)
	v, err := e2.svc.Close(e2.ctx, "sam", "pg-admin", "done")
	if err != nil {
		t.Fatal(err)
	}
	if v.State != breakglass.StateCompromised || v.LastRotationError == "" || v.CompromisedSince.IsZero() {
		t.Fatalf("after a failed rotation: %s %q", v.State, v.LastRotationError)
	}
	if err := e2.login(user, oldPW); err != nil {
		t.Fatalf("the password changed although Vault was unreachable: %v", err)
	}
	if _, err := e2.svc.Unseal(e2.ctx, "sam", breakglass.UnsealRequest{Account: "pg-admin", Reason: "r", Incident: "INC-4", Factor: e2.factor("sam")}); code(t, err) != "not_sealed" {
		t.Errorf("unseal of a compromised account: %v", err)
	}
	if m := e2.scrape(); !strings.Contains(m, `custos_breakglass_account_state{account="pg-admin",state="compromised-until-rotated"} 1`) {
		t.Errorf("/metrics:\n%s", grepLines(m, "account_state"))
	}
	// The alert repeats while it stays broken.
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := 0
		for _, s := range e2.notices() {
			if strings.Contains(s, "pg-admin is COMPROMISED-UNTIL-ROTATED") {
				n++
			}
		}
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d compromised alerts, want them repeated", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := len(e2.auditActions("breakglass.compromised")); n < 2 {
		t.Errorf("%d compromised audit records", n)
	}

	proxy.set(false)
	v = e2.waitState("pg-admin", breakglass.StateSealed, 20*time.Second)
	if v.LastRotationError != "" || !v.CompromisedSince.IsZero() || v.LastVerification == nil || !v.LastVerification.OldRejected {
		t.Errorf("after the retry: %+v", v.Account)
	}
	if err := e2.login(user, oldPW); err == nil {
		t.Error("the old password still works after the retried rotation")
	}
	e2.waitNotice("pg-admin rotated and resealed")
}

// Revealing the secret is off by default; where allowed, only custodians
// who confirmed may, with a fresh second factor; it is audited without the
// secret and the secret dies at close.
func TestReveal(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.open("pg-admin")
	if _, err := e.svc.Reveal(e.ctx, "sam", "pg-admin", e.factor("sam")); code(t, err) != "reveal_disabled" {
		t.Errorf("reveal on a default account: %v", err)
	}
	if _, err := e.svc.Close(e.ctx, "sam", "pg-admin", "done"); err != nil {
		t.Fatal(err)
	}

	e = newEnv(t, envOptions{accounts: pgAccount(", reveal: true")})
	e.open("pg-admin")
	if _, err := e.svc.Reveal(e.ctx, "erin", "pg-admin", e.factor("erin")); code(t, err) != "not_participant" {
		t.Errorf("reveal to a custodian who did not confirm: %v", err)
	}
	bad := e.factor("sam")
	bad.TOTP = "000000"
	if _, err := e.svc.Reveal(e.ctx, "sam", "pg-admin", bad); code(t, err) != "second_factor_failed" {
		t.Errorf("reveal with a wrong code: %v", err)
	}
	sec, err := e.svc.Reveal(e.ctx, "sam", "pg-admin", e.factor("sam"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.login(sec.Username, sec.Password); err != nil {
		t.Fatalf("the revealed secret does not log in: %v", err)
	}
	if v := e.status("pg-admin"); strings.Join(v.Revealed, ",") != "sam" {
		t.Errorf("revealed to %v", v.Revealed)
	}
	if len(e.auditActions("breakglass.reveal")) != 3 {
		t.Errorf("want three reveal audit records (two refused)")
	}
	e.waitNotice("pg-admin: secret revealed to sam")
	e.assertNoSecret(sec.Password)
	if _, err := e.svc.Close(e.ctx, "carol", "pg-admin", "done"); err != nil {
		t.Fatal(err)
	}
	if err := e.login(sec.Username, sec.Password); err == nil {
		t.Fatal("the revealed secret still logs in after close")
	}
	if v := e.status("pg-admin"); len(v.Revealed) != 0 {
		t.Errorf("revealed list not cleared by the rotation: %v", v.Revealed)
	}
}

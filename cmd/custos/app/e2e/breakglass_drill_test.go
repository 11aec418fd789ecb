package e2e_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/breakglass"
	"github.com/custos-pam/custos/broker/breakglass/schedule"
	"github.com/custos-pam/custos/deploy/devstack"
	"github.com/custos-pam/custos/recorder"
)

// waitDrill waits for a drill to finish.
func (e *env) waitDrill(id string) breakglass.Drill {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		d, err := e.svc.GetDrill(e.ctx, "dave", id)
		if err != nil {
			e.t.Fatal(err)
		}
		if d.Outcome != breakglass.DrillRunning {
			return d
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("drill %s still running: %+v", id, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runDrill starts a drill as sam and has carol confirm it.
func (e *env) runDrill(account string) breakglass.Drill {
	e.t.Helper()
	d, err := e.svc.StartDrill(e.ctx, "sam", account, e.factor("sam"))
	if err != nil {
		e.t.Fatal(err)
	}
	if d.UnsealID == "" || d.Outcome != breakglass.DrillRunning {
		e.t.Fatalf("started drill %+v", d)
	}
	if _, err := e.svc.Confirm(e.ctx, "carol", d.UnsealID, e.factor("carol")); err != nil {
		e.t.Fatal(err)
	}
	return e.waitDrill(d.ID)
}

func stepNames(d breakglass.Drill) string {
	var names []string
	for _, s := range d.Steps {
		names = append(names, s.Name+":"+s.Outcome)
	}
	return strings.Join(names, " ")
}

// A drill runs the whole path: custodians unseal in drill mode, the broker
// logs in with the credential and runs the probe (recorded), rotates,
// verifies and reseals; the report lists every step with its timing, as
// text, JSON and CSV.
func TestDrillEndToEnd(t *testing.T) {
	e := newEnv(t, envOptions{})
	user, oldPW := e.staticCreds("breakglass")
	d := e.runDrill("pg-admin")
	if d.Outcome != breakglass.DrillPassed {
		t.Fatalf("drill %s: %s (%s)", d.ID, d.Outcome, d.Reason)
	}
	if got := stepNames(d); got != "unseal:ok credential:ok login:ok probe:ok rotate:ok verify:ok reseal:ok" {
		t.Fatalf("steps %s", got)
	}
	for i, s := range d.Steps {
		if s.StartedAt.IsZero() || s.EndedAt.Before(s.StartedAt) || s.StartedAt.Before(d.StartedAt) || s.EndedAt.After(d.FinishedAt) {
			t.Errorf("step %d %s timing %s → %s outside the drill %s → %s", i, s.Name, s.StartedAt, s.EndedAt, d.StartedAt, d.FinishedAt)
		}
		if i > 0 && s.StartedAt.Before(d.Steps[i-1].EndedAt.Add(-time.Millisecond)) {
			t.Errorf("step %s starts before %s ended", s.Name, d.Steps[i-1].Name)
		}
	}
	if strings.Join(d.Participants, ",") != "sam,carol" || d.StartedBy != "sam" {
		t.Errorf("participants %v started by %s", d.Participants, d.StartedBy)
	}
	if d.TimeToAccess <= 0 || d.TimeToAccess > d.FinishedAt.Sub(d.StartedAt) {
		t.Errorf("time to access %s", d.TimeToAccess)
	}
	if !strings.Contains(d.Steps[3].Detail, "SELECT 1") {
		t.Errorf("probe step %+v", d.Steps[3])
	}
	// The account is sealed again with a new password.
	v := e.status("pg-admin")
	if v.State != breakglass.StateSealed || v.LastDrill != d.ID || v.LastDrillOK.IsZero() || v.Drill.Overdue {
		t.Errorf("account after the drill: %+v", v)
	}
	if err := e.login(user, oldPW); err == nil {
		t.Error("the drill did not rotate the password")
	}
	// No human got a grant from a drill.
	if _, err := e.acc.ActiveGrant(e.ctx, "sam", "demo-pg"); err == nil {
		t.Error("the drill opened a grant for a person")
	}
	// The probe session is recorded.
	if d.RecordingID == "" {
		t.Fatal("no recording id")
	}
	if err := e.rec.Drain(e.ctx); err != nil {
		t.Fatal(err)
	}
	rec, err := e.rec.Open(e.ctx, d.RecordingID, recorder.Access{Actor: "dave", Purpose: "drill evidence"})
	if err != nil {
		t.Fatalf("open the drill's recording: %v", err)
	}
	if h := rec.Header(); h.GrantID != d.ID || h.Account != user || h.Policy.Ticket != d.ID {
		t.Errorf("recording header %+v", h)
	}
	var sawProbe bool
	for ev, err := range rec.Events(e.ctx) {
		if err != nil {
			t.Fatal(err)
		}
		sawProbe = sawProbe || strings.Contains(ev.Text, "SELECT 1")
	}
	if !sawProbe {
		t.Error("the recording lacks the probe")
	}

	// The report, in all three forms.
	r, err := e.svc.DrillReport(e.ctx, "dave", schedule.Quarter(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Drills) != 1 || r.Passed != 1 || r.Failed != 0 {
		t.Fatalf("report %+v", r)
	}
	var text, js, cs bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, s := range d.Steps {
		line := ""
		for _, l := range strings.Split(text.String(), "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), s.Name+" ") {
				line = l
			}
		}
		if !strings.Contains(line, s.StartedAt.UTC().Format("2006-01-02T15:04:05")) || !strings.Contains(line, s.Duration().Round(time.Millisecond).String()) {
			t.Errorf("text report line for %s lacks its start and duration: %q", s.Name, line)
		}
	}
	for _, want := range []string{d.ID, "PASSED", "participants: sam, carol", "time to access", "recording " + d.RecordingID} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back breakglass.Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Drills) != 1 || len(back.Drills[0].Steps) != 7 {
		t.Errorf("JSON report: %v %+v", err, back)
	}
	if err := r.WriteCSV(&cs); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&cs).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1+len(d.Steps) {
		t.Fatalf("CSV has %d rows, want a header and one per step", len(rows))
	}
	for i, s := range d.Steps {
		row := rows[i+1]
		if row[1] != d.ID || row[12] != s.Name || row[16] != s.Outcome || row[15] != fmt.Sprint(s.Duration().Milliseconds()) {
			t.Errorf("CSV row %d = %v for step %+v", i+1, row, s)
		}
	}
	if !strings.Contains(e.scrape(), `custos_breakglass_drills{outcome="passed",quarter="`+schedule.Quarter(time.Now())+`"} 1`) {
		t.Error("passed drill not counted on /metrics")
	}
	e.waitNotice("drill "+d.ID, "PASSED")
	for _, a := range []string{"breakglass.drill.start", "breakglass.drill.finish"} {
		if len(e.auditActions(a)) != 1 {
			t.Errorf("want one %s audit record", a)
		}
	}
}

// A drill whose probe fails is reported failed with the reason, counts on
// the quarter's failure KRI, and the account is still rotated and sealed.
func TestDrillProbeFailure(t *testing.T) {
	e := newEnv(t, envOptions{accounts: pgAccount(`, drill: {probe: "SELECT * FROM custos_no_such_table"}`)})
	user, oldPW := e.staticCreds("breakglass")
	d := e.runDrill("pg-admin")
	if d.Outcome != breakglass.DrillFailed || !strings.HasPrefix(d.Reason, "probe: ") || !strings.Contains(d.Reason, "custos_no_such_table") {
		t.Fatalf("drill %s: %s (%s)", d.ID, d.Outcome, d.Reason)
	}
	if got := stepNames(d); got != "unseal:ok credential:ok login:ok probe:failed rotate:ok verify:ok reseal:ok" {
		t.Errorf("steps %s", got)
	}
	if err := e.login(user, oldPW); err == nil {
		t.Error("a failed drill left the password unrotated")
	}
	v := e.status("pg-admin")
	if v.State != breakglass.StateSealed || !v.LastDrillOK.IsZero() {
		t.Errorf("after a failed drill: %s, last ok %s", v.State, v.LastDrillOK)
	}
	q := schedule.Quarter(time.Now())
	if m := e.scrape(); !strings.Contains(m, `custos_breakglass_drill_failures{quarter="`+q+`"} 1`) {
		t.Errorf("failure KRI not on /metrics:\n%s", grepLines(m, "custos_breakglass"))
	}
	r, err := e.svc.DrillReport(e.ctx, "sam", q)
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	_ = r.WriteText(&text)
	if r.Failed != 1 || !strings.Contains(text.String(), "FAILED") || !strings.Contains(text.String(), "reason: probe: ") {
		t.Errorf("report:\n%s", text.String())
	}
	e.waitNotice("drill "+d.ID, "FAILED", "custos_no_such_table")
	// The failure KRI survives a restart (it is computed from the store).
	e.restart()
	if m := e.scrape(); !strings.Contains(m, `custos_breakglass_drill_failures{quarter="`+q+`"} 1`) {
		t.Errorf("failure KRI lost on restart:\n%s", grepLines(m, "custos_breakglass"))
	}
}

// An SSH account whose credential is a certificate Vault signs per session
// is drilled against the real sshd: the probe runs `true`, and there is no
// standing secret to rotate.
func TestDrillSSH(t *testing.T) {
	pg := devstack.StartPostgres(t)
	v := devstack.StartVault(t)
	v.Bootstrap(t, pg)
	sshd := devstack.StartSSHD(t, v.SSHCAPublicKey)
	targets := fmt.Sprintf(`  - name: demo-ssh
    kind: ssh
    address: "%s"
    ssh: {host_keys: ["%s"]}
    roles:
      - {name: bg-root, login: %s, vault_role: breakglass}`, sshd.Addr(), strings.TrimSpace(sshd.HostKeyLine), sshd.Login)
	e := newEnv(t, envOptions{targets: targets,
		accounts: "  - {name: host-root, target: demo-ssh, role: bg-root, custodians: [custodians]}\n"})
	d := e.runDrill("host-root")
	if d.Outcome != breakglass.DrillPassed {
		t.Fatalf("drill: %s (%s) steps %s", d.Outcome, d.Reason, stepNames(d))
	}
	if got := stepNames(d); got != "unseal:ok credential:ok login:ok probe:ok rotate:skipped verify:skipped reseal:ok" {
		t.Errorf("steps %s", got)
	}
	if !strings.Contains(d.Steps[2].Detail, sshd.Login) || !strings.Contains(d.Steps[3].Detail, `"true"`) {
		t.Errorf("login and probe steps %+v %+v", d.Steps[2], d.Steps[3])
	}
	if e.status("host-root").State != breakglass.StateSealed {
		t.Error("not sealed after the drill")
	}
	// The certificate was issued for the drill and audited.
	var found bool
	for _, r := range e.auditActions("creds.issue") {
		found = found || strings.Contains(string(r.Details), d.ID)
	}
	if !found {
		t.Error("no creds.issue record for the drill's certificate")
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

package breakglass

import (
	"bytes"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/breakglass/schedule"
	"github.com/custos-pam/custos/broker/config"
)

var t0 = time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)

func TestCheckConfirm(t *testing.T) {
	a := &config.BreakGlassAccount{Name: "pg-admin"}
	pending := func(mut func(*Account)) Account {
		st := Account{Name: "pg-admin", State: StateUnsealRequested, Unseal: &Unseal{ID: "bgu_1", Required: 2,
			ExpiresAt: t0.Add(time.Minute), Confirmations: []Confirmation{{Custodian: "sam", At: t0}}}}
		if mut != nil {
			mut(&st)
		}
		return st
	}
	tests := []struct {
		name  string
		st    Account
		actor string
		id    string
		now   time.Time
		code  string
	}{
		{"second custodian", pending(nil), "carol", "bgu_1", t0, ""},
		{"same custodian again", pending(nil), "sam", "bgu_1", t0, "already_confirmed"},
		{"another unseal id", pending(nil), "carol", "bgu_2", t0, "not_pending"},
		{"expired", pending(nil), "carol", "bgu_1", t0.Add(time.Minute), "unseal_expired"},
		{"already open", pending(func(st *Account) { st.State = StateOpen }), "carol", "bgu_1", t0, "not_pending"},
		{"sealed again", Account{Name: "pg-admin", State: StateSealed}, "carol", "bgu_1", t0, "not_pending"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkConfirm(a, tc.st, tc.actor, tc.id, tc.now)
			got := ""
			if e, ok := AsError(err); ok {
				got = e.Code
			} else if err != nil {
				t.Fatalf("not a refusal: %v", err)
			}
			if got != tc.code {
				t.Errorf("code %q, want %q (%v)", got, tc.code, err)
			}
		})
	}
}

func TestDue(t *testing.T) {
	sch, err := schedule.Parse(schedule.Spec{Expr: "quarterly", Weekday: "tue"})
	if err != nil {
		t.Fatal(err)
	}
	s := &Service{schedule: map[string]schedule.Schedule{"a": sch}}
	lastTueQ4 := time.Date(2026, 12, 29, 10, 0, 0, 0, time.UTC)
	lastTueQ1 := time.Date(2027, 3, 30, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		st      Account
		now     time.Time
		next    time.Time
		overdue bool
	}{
		{"new account, before due", Account{FirstSeen: t0}, t0, lastTueQ4, false},
		{"new account, past due", Account{FirstSeen: t0}, lastTueQ4.Add(time.Minute), lastTueQ4, true},
		{"drilled this quarter", Account{FirstSeen: t0, LastDrillOK: t0.Add(24 * time.Hour)}, lastTueQ4.Add(time.Hour), lastTueQ4, true},
		{"drilled after this quarter's due date", Account{FirstSeen: t0, LastDrillOK: lastTueQ4.Add(time.Hour)}, lastTueQ4.Add(2 * time.Hour), lastTueQ1, false},
		{"a failed drill does not count", Account{FirstSeen: t0, LastDrill: "drl_x"}, lastTueQ4.Add(time.Hour), lastTueQ4, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := s.due("a", tc.st, tc.now)
			if !d.NextDue.Equal(tc.next) || d.Overdue != tc.overdue {
				t.Errorf("due %s overdue %t, want %s %t", d.NextDue, d.Overdue, tc.next, tc.overdue)
			}
		})
	}
}

func TestDrillNotice(t *testing.T) {
	due := t0.Add(72 * time.Hour)
	week := 7 * 24 * time.Hour
	tests := []struct {
		name            string
		d               DrillDue
		st              Account
		now             time.Time
		remind, overdue bool
	}{
		{"too early to remind", DrillDue{NextDue: due}, Account{}, due.Add(-8 * 24 * time.Hour), false, false},
		{"within the reminder window", DrillDue{NextDue: due}, Account{}, t0, true, false},
		{"reminded already", DrillDue{NextDue: due}, Account{RemindedFor: due}, t0, false, false},
		{"reminded for an earlier due date", DrillDue{NextDue: due}, Account{RemindedFor: due.Add(-90 * 24 * time.Hour)}, t0, true, false},
		{"overdue, not yet told", DrillDue{NextDue: due, Overdue: true}, Account{RemindedFor: due}, due.Add(time.Hour), false, true},
		{"overdue, told an hour ago", DrillDue{NextDue: due, Overdue: true}, Account{OverdueFor: due, LastOverdueNotice: due.Add(time.Hour)}, due.Add(2 * time.Hour), false, false},
		{"overdue, told a day ago", DrillDue{NextDue: due, Overdue: true}, Account{OverdueFor: due, LastOverdueNotice: due}, due.Add(25 * time.Hour), false, true},
		{"no schedule", DrillDue{}, Account{}, t0, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, o := drillNotice(tc.d, tc.st, week, tc.now)
			if r != tc.remind || o != tc.overdue {
				t.Errorf("remind %t overdue %t, want %t %t", r, o, tc.remind, tc.overdue)
			}
		})
	}
}

func TestReportCSVRowPerStep(t *testing.T) {
	r := Report{Quarter: "2026Q4", Drills: []Drill{
		{ID: "drl_1", Account: "pg-admin", Outcome: DrillFailed, Reason: "probe: boom", Participants: []string{"sam", "carol"},
			StartedAt: t0, FinishedAt: t0.Add(3 * time.Second), Steps: []Step{
				{Name: stepUnseal, StartedAt: t0, EndedAt: t0.Add(time.Second), Outcome: StepOK},
				{Name: stepProbe, StartedAt: t0.Add(time.Second), EndedAt: t0.Add(1500 * time.Millisecond), Outcome: StepFailed, Detail: "boom, with \"quotes\""},
			}},
		{ID: "drl_2", Account: "host-root", Outcome: DrillFailed, Reason: "unseal: lapsed", StartedAt: t0},
	}}
	var b bytes.Buffer
	if err := r.WriteCSV(&b); err != nil {
		t.Fatal(err)
	}
	want := `quarter,drill_id,account,target,started_by,participants,drill_started_at,drill_finished_at,outcome,reason,time_to_access_ms,recording_id,step,step_started_at,step_ended_at,step_duration_ms,step_outcome,step_detail
2026Q4,drl_1,pg-admin,,,sam carol,2026-11-03T12:00:00.000Z,2026-11-03T12:00:03.000Z,failed,probe: boom,0,,unseal,2026-11-03T12:00:00.000Z,2026-11-03T12:00:01.000Z,1000,ok,
2026Q4,drl_1,pg-admin,,,sam carol,2026-11-03T12:00:00.000Z,2026-11-03T12:00:03.000Z,failed,probe: boom,0,,probe,2026-11-03T12:00:01.000Z,2026-11-03T12:00:01.500Z,500,failed,"boom, with ""quotes"""
2026Q4,drl_2,host-root,,,,2026-11-03T12:00:00.000Z,,failed,unseal: lapsed,0,,,,,,,
`
	if b.String() != want {
		t.Errorf("CSV:\n%s\nwant:\n%s", b.String(), want)
	}
}

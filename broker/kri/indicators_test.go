package kri_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/breakglass"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/kri"
	"github.com/custos-pam/custos/broker/retrieval"
)

// Each indicator: create the condition in a real store and see the
// number change and the drill-down list hold the causing record. create
// may also add records that must not count (the near misses); it
// returns the causing record's id.
func TestKRIIndicators(t *testing.T) {
	cases := []struct {
		name   string
		create func(e *env) string
		// before and after are the values; -1 means no data.
		before, after float64
	}{
		{"active_grants", func(e *env) string {
			e.grant(broker.Grant{User: "bob", Target: "db", Role: "ro", StartsAt: e.now.Add(-2 * time.Hour), EndsAt: e.now.Add(-time.Hour), State: broker.GrantExpired})
			return e.grant(broker.Grant{User: "alice", Target: "db", Role: "ro", StartsAt: e.now.Add(-time.Minute), EndsAt: e.now.Add(time.Hour)}).ID
		}, 0, 1},
		{"privileged_sessions_month", func(e *env) string {
			return e.session(broker.Session{User: "alice", StartedAt: e.now.Add(-time.Second), EndedAt: e.now, State: broker.SessionClosed, ManifestHash: "h"}).ID
		}, 0, 1},
		{"grants_without_ticket", func(e *env) string {
			e.grant(broker.Grant{User: "bob", Target: "db", Role: "rw", Ticket: "INC-1", StartsAt: e.now.Add(-time.Minute), EndsAt: e.now.Add(time.Hour)})
			e.grant(broker.Grant{User: "bob", Target: "db", Role: "ro", StartsAt: e.now.Add(-time.Minute), EndsAt: e.now.Add(time.Hour)})
			return e.grant(broker.Grant{User: "alice", Target: "db", Role: "rw", StartsAt: e.now.Add(-time.Minute), EndsAt: e.now.Add(time.Hour)}).ID
		}, 0, 1},
		{"rubber_stamp_approvals", func(e *env) string {
			at := e.now.Add(-time.Hour)
			e.request(broker.Request{User: "bob", CreatedAt: at, Approvals: []broker.Decision{{By: "alice", At: at.Add(5 * time.Minute)}}})
			return e.request(broker.Request{User: "alice", CreatedAt: at, Approvals: []broker.Decision{{By: "bob", At: at.Add(4 * time.Second)}}}).ID
		}, 0, 1},
		{"collusion_pairs", func(e *env) string {
			at := e.now.Add(-48 * time.Hour)
			e.request(broker.Request{User: "alice", CreatedAt: at, Approvals: []broker.Decision{{By: "sam", At: at.Add(time.Hour)}}})
			e.request(broker.Request{User: "bob", CreatedAt: at, Approvals: []broker.Decision{{By: "alice", At: at.Add(time.Hour)}}})
			return e.request(broker.Request{User: "alice", CreatedAt: at.Add(time.Hour), Approvals: []broker.Decision{{By: "bob", At: at.Add(2 * time.Hour)}}}).ID
		}, 0, 1},
		{"users_without_mfa", func(e *env) string {
			e.cfg.Users = append(e.cfg.Users, config.User{Name: "mallory"}, config.User{Name: "off", Disabled: true})
			return "mallory"
		}, 0, 1},
		{"users_without_mfa_ratio", func(e *env) string {
			e.cfg.Users = append(e.cfg.Users, config.User{Name: "mallory"})
			return "mallory"
		}, 0, 0.25},
		{"stale_users", func(e *env) string {
			// alice, bob and sam made no request: stale until they do.
			e.request(broker.Request{User: "alice", CreatedAt: e.now.Add(-24 * time.Hour)})
			e.request(broker.Request{User: "sam", CreatedAt: e.now.Add(-24 * time.Hour)})
			e.request(broker.Request{User: "bob", CreatedAt: e.now.Add(-100 * 24 * time.Hour)})
			return "bob"
		}, 3, 1},
		{"dormant_accounts", func(e *env) string {
			e.cfg.Users = append(e.cfg.Users, config.User{Name: "olga", TOTPSecret: totp}, config.User{Name: "pat", TOTPSecret: totp})
			// pat signed in long ago, olga never; pat's session today
			// would wake pat, an old one does not.
			e.audit(broker.AuditRecord{Time: e.now.Add(-40 * 24 * time.Hour), Actor: "pat", Action: "auth.login", Outcome: broker.OutcomeSuccess})
			e.audit(broker.AuditRecord{Time: e.now.Add(-time.Hour), Actor: "pat", Action: "auth.login", Outcome: broker.OutcomeDenied})
			e.session(broker.Session{User: "pat", StartedAt: e.now.Add(-35 * 24 * time.Hour), EndedAt: e.now.Add(-35 * 24 * time.Hour), State: broker.SessionClosed})
			return "olga"
		}, 0, 2},
		{"api_tokens_over_rotation", func(e *env) string {
			e.update(func(tx broker.Tx) error {
				return tx.PutToken(broker.Token{ID: "tok_new", Hash: "h1", User: "bob", Kind: "api", CreatedAt: e.now.Add(-time.Hour), ExpiresAt: e.now.Add(time.Hour)})
			})
			e.update(func(tx broker.Tx) error {
				return tx.PutToken(broker.Token{ID: "tok_old", Hash: "h2", User: "alice", Kind: "api", CreatedAt: e.now.Add(-100 * 24 * time.Hour), ExpiresAt: e.now.Add(24 * time.Hour)})
			})
			return "tok_old"
		}, 0, 1},
		{"sessions_without_recording", func(e *env) string {
			ok := e.session(broker.Session{User: "bob", StartedAt: e.now.Add(-2 * time.Hour), EndedAt: e.now.Add(-time.Hour), State: broker.SessionClosed, ManifestHash: "h"})
			e.audit(broker.AuditRecord{Time: e.now.Add(-50 * time.Minute), Actor: "system", Action: "session.verify", Outcome: broker.OutcomeSuccess,
				Details: json.RawMessage(`{"session_id":"` + ok.ID + `"}`)})
			// Just ended: the verifier has not had its chance yet.
			e.session(broker.Session{User: "bob", StartedAt: e.now.Add(-2 * time.Minute), EndedAt: e.now.Add(-time.Minute), State: broker.SessionClosed})
			return e.session(broker.Session{User: "alice", StartedAt: e.now.Add(-2 * time.Hour), EndedAt: e.now.Add(-time.Hour), State: broker.SessionInterrupted}).ID
		}, 0, 1},
		{"recordings_failing_verification", func(e *env) string {
			s := e.session(broker.Session{User: "alice", StartedAt: e.now.Add(-2 * time.Hour), EndedAt: e.now.Add(-time.Hour), State: broker.SessionClosed, ManifestHash: "h"})
			e.audit(broker.AuditRecord{Time: e.now.Add(-30 * time.Minute), Actor: "sam", Action: "session.verify", Outcome: broker.OutcomeError,
				Reason: "chunk 3 altered", Details: json.RawMessage(`{"session_id":"` + s.ID + `"}`)})
			return s.ID
		}, 0, 1},
		{"breakglass_unseals", func(e *env) string {
			e.audit(broker.AuditRecord{Time: e.now.Add(-time.Hour), Actor: "erin", Action: "breakglass.unseal", Outcome: broker.OutcomeSuccess,
				Details: json.RawMessage(`{"account":"pg-admin","drill":"drl_1"}`)})
			return e.audit(broker.AuditRecord{Time: e.now.Add(-time.Hour), Actor: "erin", Action: "breakglass.unseal", Outcome: broker.OutcomeSuccess,
				Reason: "INC-9 outage", Details: json.RawMessage(`{"account":"pg-admin","drill":""}`)}).ID
		}, 0, 1},
		{"drills_overdue", func(e *env) string {
			// No restore drill ever passed: due a quarter after the audit
			// log began. Let time pass.
			e.now = e.now.Add(200 * 24 * time.Hour)
			return breakglass.RestoreAccount
		}, 0, 1},
		{"drill_failures_quarter", func(e *env) string {
			d := breakglass.Drill{ID: "drl_fail", StartedBy: "sam", StartedAt: e.now.Add(-time.Minute), FinishedAt: e.now, Outcome: breakglass.DrillFailed, Reason: "restore failed"}
			if err := breakglass.SaveRestoreDrill(e.t.Context(), e.st, d, nil); err != nil {
				e.t.Fatal(err)
			}
			ok := breakglass.Drill{ID: "drl_ok", StartedBy: "sam", StartedAt: e.now.Add(-time.Minute), FinishedAt: e.now, Outcome: breakglass.DrillPassed}
			if err := breakglass.SaveRestoreDrill(e.t.Context(), e.st, ok, nil); err != nil {
				e.t.Fatal(err)
			}
			return d.ID
		}, 0, 1},
		{"approval_latency_median", func(e *env) string {
			at := e.now.Add(-time.Hour)
			e.request(broker.Request{User: "bob", CreatedAt: at, DecidedAt: at.Add(time.Minute)})
			e.request(broker.Request{User: "bob", CreatedAt: at, DecidedAt: at.Add(3 * time.Minute)})
			e.request(broker.Request{User: "bob", CreatedAt: at, State: broker.RequestDenied, DecidedAt: at.Add(30 * time.Minute)})
			return e.request(broker.Request{User: "alice", CreatedAt: at, DecidedAt: at.Add(2 * time.Minute)}).ID
		}, -1, 120},
		{"approval_latency_p90", func(e *env) string {
			at := e.now.Add(-time.Hour)
			for i := range 9 {
				e.request(broker.Request{User: "bob", CreatedAt: at, DecidedAt: at.Add(time.Duration(i+1) * time.Second)})
			}
			return e.request(broker.Request{User: "alice", CreatedAt: at, DecidedAt: at.Add(20 * time.Minute)}).ID
		}, -1, 9},
		{"retrieval_pass_rate", func(e *env) string {
			// An old run outside the lookback does not count.
			if _, err := retrieval.Record(e.t.Context(), e.st, e.log, "sam", e.now.Add(-60*24*time.Hour),
				[]retrieval.Question{{Q: "old", MS: 1, Pass: false}}); err != nil {
				e.t.Fatal(err)
			}
			run, err := retrieval.Record(e.t.Context(), e.st, e.log, "sam", e.now.Add(-time.Hour), []retrieval.Question{
				{Q: "who could reach db", MS: 12000, Pass: true},
				{Q: "what did alice run", MS: 400000, Pass: true}, // over five minutes: failed
			})
			if err != nil {
				e.t.Fatal(err)
			}
			return kri.RetrievalRunID(run)
		}, -1, 0.5},
	}
	var covered []string
	for _, c := range cases {
		covered = append(covered, c.name)
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			if got := value(e.get(c.name)); got != c.before {
				t.Fatalf("before: %s = %v, want %v", c.name, got, c.before)
			}
			id := c.create(e)
			ind := e.get(c.name)
			if got := value(ind); got != c.after {
				t.Fatalf("after: %s = %v, want %v; records %+v", c.name, got, c.after, ind.Records)
			}
			if !hasRecord(ind, id) {
				t.Fatalf("%s: drill-down lacks the causing record %s: %+v", c.name, id, ind.Records)
			}
			for _, r := range ind.Records {
				if r.Link == "" || r.Link[0] != '/' {
					t.Errorf("%s: record %s has no page link: %q", c.name, r.ID, r.Link)
				}
			}
		})
	}
	for _, n := range kri.Names() {
		if !slices.Contains(covered, n) {
			t.Errorf("indicator %s has no test case", n)
		}
	}
}

// The month's sessions are broken down per target with their duration.
func TestKRISessionsPerTarget(t *testing.T) {
	e := newEnv(t)
	start := e.now.Add(-time.Second)
	if start.Before(time.Date(e.now.Year(), e.now.Month(), 1, 0, 0, 0, 0, time.UTC)) {
		t.Skip("the wall clock is at the first second of a month")
	}
	e.session(broker.Session{User: "alice", Target: "db", StartedAt: start, EndedAt: e.now, State: broker.SessionClosed})
	e.session(broker.Session{User: "alice", Target: "db", StartedAt: start, EndedAt: e.now, State: broker.SessionClosed})
	e.session(broker.Session{User: "bob", Target: "web1", Protocol: "ssh", StartedAt: start, State: broker.SessionLive})
	ind := e.get("privileged_sessions_month")
	want := []kri.Row{{Key: "db", Count: 2, Seconds: 2}, {Key: "web1", Count: 1, Seconds: 1}}
	if !slices.Equal(ind.Breakdown, want) {
		t.Fatalf("breakdown %+v, want %+v", ind.Breakdown, want)
	}
}

// An indicator's drill-down list is cut at MaxRecords, and what is kept
// holds no more than that: the records past the cap (one per session
// this month, for one) are not kept alive behind the list.
func TestKRIRecordsCapHoldsNoMore(t *testing.T) {
	e := newEnv(t)
	start := e.now.Add(-time.Second)
	if start.Before(time.Date(e.now.Year(), e.now.Month(), 1, 0, 0, 0, 0, time.UTC)) {
		t.Skip("the wall clock is at the first second of a month")
	}
	c, err := kri.New(kri.Options{Config: e.cfg, Store: e.st, Drills: e.bg, Now: e.clock, MaxRecords: 3})
	if err != nil {
		t.Fatal(err)
	}
	for range 40 {
		e.session(broker.Session{User: "alice", StartedAt: start, EndedAt: e.now, State: broker.SessionClosed})
	}
	ind, err := c.One(t.Context(), "privileged_sessions_month")
	if err != nil {
		t.Fatal(err)
	}
	if ind.RecordCount != 40 || len(ind.Records) != 3 {
		t.Fatalf("%d records behind the value, %d listed; want 40 and 3", ind.RecordCount, len(ind.Records))
	}
	if cap(ind.Records) > 3 {
		t.Fatalf("the list of 3 records keeps room for %d: the records past the cap stay in memory", cap(ind.Records))
	}
}

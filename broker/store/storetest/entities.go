package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
)

func testRequests(t *testing.T, s broker.Store) {
	mk := func(id, user, target string, st broker.RequestState, created, expires time.Duration) broker.Request {
		return broker.Request{
			ID: id, User: user, Target: target, Role: "ro", Reason: "INC-1 check", Ticket: "INC-1",
			Duration: time.Hour, State: st, Required: 1, Approvals: []broker.Decision{},
			CreatedAt: at(created), ExpiresAt: at(expires),
		}
	}
	r1 := mk("req_1", "alice", "db1", broker.RequestPending, 0, time.Hour)
	r2 := mk("req_2", "bob", "db1", broker.RequestApproved, time.Minute, 2*time.Hour)
	r2.Approvals = []broker.Decision{{By: "carol", At: at(90 * time.Second), Comment: "ok", Via: "slack"}}
	r2.DecidedAt, r2.GrantID = at(90*time.Second), "grt_2"
	r3 := mk("req_3", "alice", "host1", broker.RequestDenied, 2*time.Minute, 30*time.Minute)
	r3.Denials = []broker.Decision{{By: "dave", At: at(3 * time.Minute), Via: "cli"}}
	update(t, s, func(tx broker.Tx) error {
		for _, r := range []broker.Request{r1, r2, r3} {
			if err := tx.PutRequest(r); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(tx broker.Tx) error {
		for _, want := range []broker.Request{r1, r2, r3} {
			got, err := tx.GetRequest(want.ID)
			if err != nil {
				t.Fatal(err)
			}
			mustEqual(t, "GetRequest "+want.ID, got, want)
		}
		list := func(f broker.RequestFilter) ([]broker.Request, error) { return tx.ListRequests(f) }
		cases := []struct {
			name string
			f    broker.RequestFilter
			want []string
		}{
			{"all", broker.RequestFilter{}, []string{"req_3", "req_2", "req_1"}},
			{"user", broker.RequestFilter{User: "alice"}, []string{"req_3", "req_1"}},
			{"target", broker.RequestFilter{Target: "db1"}, []string{"req_2", "req_1"}},
			{"states", broker.RequestFilter{States: []broker.RequestState{broker.RequestPending, broker.RequestDenied}}, []string{"req_3", "req_1"}},
			{"expires before is strict", broker.RequestFilter{ExpiresBefore: base.Add(time.Hour)}, []string{"req_3"}},
			{"expires before", broker.RequestFilter{ExpiresBefore: base.Add(time.Hour + 1)}, []string{"req_3", "req_1"}},
			{"limit", broker.RequestFilter{Limit: 2}, []string{"req_3", "req_2"}},
			{"combined", broker.RequestFilter{User: "alice", Target: "db1", States: []broker.RequestState{broker.RequestPending}}, []string{"req_1"}},
			{"no match", broker.RequestFilter{User: "mallory"}, nil},
		}
		for _, c := range cases {
			got, err := list(c.f)
			checkIDs(t, "ListRequests "+c.name, got, err, c.want...)
		}
		return nil
	})

	// Put replaces, and the filter columns follow the new values.
	r1.State, r1.DecidedAt = broker.RequestCancelled, at(5*time.Minute)
	update(t, s, func(tx broker.Tx) error { return tx.PutRequest(r1) })
	view(t, s, func(tx broker.Tx) error {
		got, err := tx.GetRequest("req_1")
		if err != nil {
			t.Fatal(err)
		}
		mustEqual(t, "replaced request", got, r1)
		l, err := tx.ListRequests(broker.RequestFilter{States: []broker.RequestState{broker.RequestPending}})
		checkIDs(t, "pending after replace", l, err)
		l, err = tx.ListRequests(broker.RequestFilter{States: []broker.RequestState{broker.RequestCancelled}})
		checkIDs(t, "cancelled after replace", l, err, "req_1")
		return nil
	})
}

func testGrants(t *testing.T, s broker.Store) {
	mk := func(id, req, user, target, role string, start, end time.Duration) broker.Grant {
		return broker.Grant{
			ID: id, RequestID: req, User: user, Target: target, Role: role,
			StartsAt: at(start), EndsAt: at(end), Approvers: []string{"carol"}, Reason: "r",
			State: broker.GrantActive,
		}
	}
	g1 := mk("grt_1", "req_1", "alice", "db1", "ro", 0, time.Hour)
	g2 := mk("grt_2", "req_2", "bob", "db1", "rw", 10*time.Minute, 2*time.Hour)
	g2.State, g2.RevokedAt, g2.RevokedBy, g2.RevokeReason = broker.GrantRevoked, at(20*time.Minute), "sec", "done"
	g3 := mk("grt_3", "req_3", "alice", "host1", "login", 3*time.Hour, 4*time.Hour)
	g4 := mk("grt_4", "req_4", "carol", "host1", "login", -2*time.Hour, -time.Hour)
	g4.State = broker.GrantExpired
	update(t, s, func(tx broker.Tx) error {
		for _, g := range []broker.Grant{g1, g2, g3, g4} {
			if err := tx.PutGrant(g); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(tx broker.Tx) error {
		for _, want := range []broker.Grant{g1, g2, g3, g4} {
			got, err := tx.GetGrant(want.ID)
			if err != nil {
				t.Fatal(err)
			}
			mustEqual(t, "GetGrant "+want.ID, got, want)
		}
		cases := []struct {
			name string
			f    broker.GrantFilter
			want []string
		}{
			{"all", broker.GrantFilter{}, []string{"grt_3", "grt_2", "grt_1", "grt_4"}},
			{"user", broker.GrantFilter{User: "alice"}, []string{"grt_3", "grt_1"}},
			{"target", broker.GrantFilter{Target: "db1"}, []string{"grt_2", "grt_1"}},
			{"role", broker.GrantFilter{Role: "login"}, []string{"grt_3", "grt_4"}},
			{"request", broker.GrantFilter{RequestID: "req_2"}, []string{"grt_2"}},
			{"states", broker.GrantFilter{States: []broker.GrantState{broker.GrantRevoked, broker.GrantExpired}}, []string{"grt_2", "grt_4"}},
			// EndsBefore looks at EndsAt, not at the revocation.
			{"ends before", broker.GrantFilter{EndsBefore: base.Add(90 * time.Minute)}, []string{"grt_1", "grt_4"}},
			{"ends before is strict", broker.GrantFilter{EndsBefore: base.Add(-time.Hour)}, nil},
			{"active at start instant", broker.GrantFilter{ActiveAt: base}, []string{"grt_1"}},
			{"active both", broker.GrantFilter{ActiveAt: base.Add(15 * time.Minute)}, []string{"grt_2", "grt_1"}},
			// grt_2 was revoked at +20m, before its EndsAt.
			{"active after revocation", broker.GrantFilter{ActiveAt: base.Add(20 * time.Minute)}, []string{"grt_1"}},
			{"inactive at end instant", broker.GrantFilter{ActiveAt: base.Add(time.Hour)}, nil},
			{"active future", broker.GrantFilter{ActiveAt: base.Add(3*time.Hour + time.Nanosecond)}, []string{"grt_3"}},
			{"active in other zone", broker.GrantFilter{ActiveAt: base.Add(-90 * time.Minute).In(time.FixedZone("X", -7*3600))}, []string{"grt_4"}},
			{"limit", broker.GrantFilter{Limit: 1}, []string{"grt_3"}},
			{"combined", broker.GrantFilter{Target: "db1", ActiveAt: base.Add(30 * time.Minute)}, []string{"grt_1"}},
		}
		for _, c := range cases {
			got, err := tx.ListGrants(c.f)
			checkIDs(t, "ListGrants "+c.name, got, err, c.want...)
		}
		return nil
	})

	// Revoking through a replace moves the effective end.
	g1.State, g1.RevokedAt = broker.GrantRevoked, at(time.Minute)
	update(t, s, func(tx broker.Tx) error { return tx.PutGrant(g1) })
	view(t, s, func(tx broker.Tx) error {
		got, err := tx.ListGrants(broker.GrantFilter{ActiveAt: base.Add(2 * time.Minute)})
		checkIDs(t, "active after revoking grt_1", got, err)
		return nil
	})
}

func testTokens(t *testing.T, s broker.Store) {
	t1 := broker.Token{ID: "tok_1", Hash: "h1", User: "alice", Kind: "api", CreatedAt: at(0), ExpiresAt: at(time.Hour), Source: "127.0.0.1"}
	t2 := broker.Token{ID: "tok_2", Hash: "h2", User: "alice", Kind: "web", CreatedAt: at(time.Minute), ExpiresAt: at(time.Hour)}
	t3 := broker.Token{ID: "tok_3", Hash: "h3", User: "bob", Kind: "db", Target: "db1", CreatedAt: at(0), ExpiresAt: at(time.Hour)}
	update(t, s, func(tx broker.Tx) error {
		for _, tok := range []broker.Token{t1, t2, t3} {
			if err := tx.PutToken(tok); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(tx broker.Tx) error {
		got, err := tx.GetToken("tok_3")
		if err != nil {
			t.Fatal(err)
		}
		mustEqual(t, "GetToken", got, t3)
		got, err = tx.GetTokenByHash("h2")
		if err != nil {
			t.Fatal(err)
		}
		mustEqual(t, "GetTokenByHash", got, t2)
		l, err := tx.ListTokens("alice")
		checkIDs(t, "ListTokens alice", l, err, "tok_2", "tok_1")
		if err == nil && l[1].Hash != "h1" {
			t.Errorf("ListTokens lost the hash: %+v", l[1])
		}
		l, err = tx.ListTokens("nobody")
		checkIDs(t, "ListTokens nobody", l, err)
		users, err := tx.ListTokenUsers()
		if err != nil || strings.Join(users, ",") != "alice,bob" {
			t.Errorf("ListTokenUsers = %v, %v; want alice, bob", users, err)
		}
		return nil
	})

	err := s.Update(t.Context(), func(tx broker.Tx) error {
		return tx.PutToken(broker.Token{ID: "tok_4", Hash: "h1", User: "mallory", Kind: "api"})
	})
	if !errors.Is(err, broker.ErrConflict) {
		t.Errorf("second token with the same hash: err = %v, want ErrConflict", err)
	}

	update(t, s, func(tx broker.Tx) error { return tx.DeleteToken("tok_1") })
	view(t, s, func(tx broker.Tx) error {
		if _, err := tx.GetToken("tok_1"); !errors.Is(err, broker.ErrNotFound) {
			t.Errorf("GetToken after delete: %v", err)
		}
		if _, err := tx.GetTokenByHash("h1"); !errors.Is(err, broker.ErrNotFound) {
			t.Errorf("GetTokenByHash after delete: %v", err)
		}
		return nil
	})
	err = s.Update(t.Context(), func(tx broker.Tx) error { return tx.DeleteToken("tok_1") })
	if !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("deleting a missing token: err = %v, want ErrNotFound", err)
	}
}

// testDeleteExpiredTokens: tokens whose expiry is strictly before the
// cutoff go, whoever owns them and whatever their kind; the rest stay.
// Expiries a nanosecond apart and in another zone check that the store
// compares instants.
func testDeleteExpiredTokens(t *testing.T, s broker.Store) {
	cutoff := base.Add(time.Hour) // base is UTC+1: compared as an instant
	toks := []broker.Token{
		{ID: "tok_old", Hash: "h1", User: "alice", Kind: "api", CreatedAt: at(-48 * time.Hour), ExpiresAt: at(-40 * time.Hour)},
		{ID: "tok_justbefore", Hash: "h2", User: "bob", Kind: "db", Target: "db1", CreatedAt: at(0), ExpiresAt: at(time.Hour - time.Nanosecond)},
		{ID: "tok_at", Hash: "h3", User: "alice", Kind: "web", CreatedAt: at(0), ExpiresAt: at(time.Hour)},
		{ID: "tok_live", Hash: "h4", User: "alice", Kind: "api", CreatedAt: at(0), ExpiresAt: at(8 * time.Hour)},
	}
	update(t, s, func(tx broker.Tx) error {
		for _, tok := range toks {
			if err := tx.PutToken(tok); err != nil {
				return err
			}
		}
		return nil
	})
	var n int
	update(t, s, func(tx broker.Tx) error {
		var err error
		n, err = tx.DeleteExpiredTokens(cutoff)
		return err
	})
	if n != 2 {
		t.Errorf("DeleteExpiredTokens deleted %d, want 2", n)
	}
	view(t, s, func(tx broker.Tx) error {
		for _, id := range []string{"tok_old", "tok_justbefore"} {
			if _, err := tx.GetToken(id); !errors.Is(err, broker.ErrNotFound) {
				t.Errorf("GetToken %s after the purge: %v", id, err)
			}
		}
		l, err := tx.ListTokens("alice")
		checkIDs(t, "ListTokens alice after the purge", l, err, "tok_live", "tok_at")
		return nil
	})
	// Nothing left to delete: zero, not an error.
	update(t, s, func(tx broker.Tx) error {
		var err error
		n, err = tx.DeleteExpiredTokens(cutoff)
		return err
	})
	if n != 0 {
		t.Errorf("second DeleteExpiredTokens deleted %d, want 0", n)
	}
}

func testSessions(t *testing.T, s broker.Store) {
	mk := func(id, grant, user, target, proto string, st broker.SessionState, start time.Duration, index string) broker.Session {
		return broker.Session{ID: id, GrantID: grant, User: user, Target: target, Role: "r", Protocol: proto,
			ClientAddr: "127.0.0.1:5555", StartedAt: at(start), State: st, Bytes: 10, Statements: 2, Index: index}
	}
	s1 := mk("ses_1", "grt_1", "alice", "db1", "postgres", broker.SessionClosed, 0, "SELECT * FROM Patients WHERE name LIKE 'A%'")
	s1.EndedAt, s1.ManifestHash = at(time.Minute), "abc"
	s2 := mk("ses_2", "grt_2", "bob", "host1", "ssh", broker.SessionLive, time.Minute, "sudo systemctl restart nginx\nCAT /etc/ÄRGER")
	s3 := mk("ses_3", "grt_3", "alice", "host1", "ssh", broker.SessionTerminated, 2*time.Minute, "rm -rf /tmp/x_y\nls /var/[ab]*.lo?")
	s3.EndReason = "access revoked"
	update(t, s, func(tx broker.Tx) error {
		for _, x := range []broker.Session{s1, s2, s3} {
			if err := tx.PutSession(x); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(tx broker.Tx) error {
		for _, want := range []broker.Session{s1, s2, s3} {
			got, err := tx.GetSession(want.ID)
			if err != nil {
				t.Fatal(err)
			}
			mustEqual(t, "GetSession "+want.ID, got, want)
		}
		cases := []struct {
			name string
			f    broker.SessionFilter
			want []string
		}{
			{"all", broker.SessionFilter{}, []string{"ses_3", "ses_2", "ses_1"}},
			{"user", broker.SessionFilter{User: "alice"}, []string{"ses_3", "ses_1"}},
			{"target", broker.SessionFilter{Target: "host1"}, []string{"ses_3", "ses_2"}},
			{"protocol", broker.SessionFilter{Protocol: "postgres"}, []string{"ses_1"}},
			{"grant", broker.SessionFilter{GrantID: "grt_2"}, []string{"ses_2"}},
			{"states", broker.SessionFilter{States: []broker.SessionState{broker.SessionLive, broker.SessionClosed}}, []string{"ses_2", "ses_1"}},
			{"since is inclusive", broker.SessionFilter{Since: base.Add(time.Minute)}, []string{"ses_3", "ses_2"}},
			{"until is exclusive", broker.SessionFilter{Until: base.Add(time.Minute)}, []string{"ses_1"}},
			{"contains folds case", broker.SessionFilter{Contains: "patients"}, []string{"ses_1"}},
			{"contains folds non-ASCII case", broker.SessionFilter{Contains: "/etc/ärger"}, []string{"ses_2"}},
			{"contains takes % literally", broker.SessionFilter{Contains: "%"}, []string{"ses_1"}},
			{"contains takes _ literally", broker.SessionFilter{Contains: "x_y"}, []string{"ses_3"}},
			{"contains _ is no wildcard", broker.SessionFilter{Contains: "m_-rf"}, nil},
			{"contains takes * ? [ literally", broker.SessionFilter{Contains: "[ab]*.lo?"}, []string{"ses_3"}},
			{"contains * is no wildcard", broker.SessionFilter{Contains: "/var/*.lo"}, nil},
			{"contains ? is no wildcard", broker.SessionFilter{Contains: "/v?r/"}, nil},
			{"contains [ is no class", broker.SessionFilter{Contains: "/tmp/[x]"}, nil},
			{"contains two characters", broker.SessionFilter{Contains: "RM"}, []string{"ses_3"}},
			{"limit", broker.SessionFilter{Limit: 1}, []string{"ses_3"}},
			{"combined", broker.SessionFilter{User: "alice", Protocol: "ssh", Contains: "RM"}, []string{"ses_3"}},
		}
		for _, c := range cases {
			got, err := tx.ListSessions(c.f)
			checkIDs(t, "ListSessions "+c.name, got, err, c.want...)
		}
		return nil
	})

	s2.State, s2.Index = broker.SessionClosed, s2.Index+"\nexit"
	update(t, s, func(tx broker.Tx) error { return tx.PutSession(s2) })
	view(t, s, func(tx broker.Tx) error {
		got, err := tx.ListSessions(broker.SessionFilter{Contains: "EXIT", States: []broker.SessionState{broker.SessionClosed}})
		checkIDs(t, "after replace", got, err, "ses_2")
		return nil
	})

	// A replaced index is searched as it now reads, not as it read.
	s3.Index = "psql -c 'vacuum'"
	update(t, s, func(tx broker.Tx) error { return tx.PutSession(s3) })
	view(t, s, func(tx broker.Tx) error {
		got, err := tx.ListSessions(broker.SessionFilter{Contains: "rm -rf"})
		checkIDs(t, "replaced text is gone", got, err)
		got, err = tx.ListSessions(broker.SessionFilter{Contains: "VACUUM"})
		checkIDs(t, "replacing text is found", got, err, "ses_3")
		return nil
	})
}

// testSessionSearchAtScale searches more sessions than a content search
// reads newest-first before turning to an index (2,000 on SQLite), so a
// search that finds its page among the newest, one whose matches are all
// older, and one that needs both give the same answers as a plain scan.
func testSessionSearchAtScale(t *testing.T, s broker.Store) {
	const n = 2500
	id := func(i int) string { return fmt.Sprintf("ses_%05d", i) }
	update(t, s, func(tx broker.Tx) error {
		for i := range n {
			idx := "ls -la /var/log\n"
			if i%10 == 0 {
				idx += "every TENTH session\n"
			}
			if i == 6 || i == 7 {
				idx += "pg_dump --data-only customers\n"
			}
			user := "alice"
			if i%2 == 1 {
				user = "bob"
			}
			err := tx.PutSession(broker.Session{ID: id(i), GrantID: "grt_1", User: user, Target: "db1", Role: "ro",
				Protocol: "ssh", StartedAt: at(time.Duration(i) * time.Second), State: broker.SessionClosed, Index: idx})
			if err != nil {
				return err
			}
		}
		return nil
	})
	ids := func(from, to, step int) []string { // newest first
		var out []string
		for i := from; i >= to; i -= step {
			out = append(out, id(i))
		}
		return out
	}
	cases := []struct {
		name string
		f    broker.SessionFilter
		want []string
	}{
		{"common, page among the newest", broker.SessionFilter{Contains: "/VAR/LOG", Limit: 50}, ids(n-1, n-50, 1)},
		{"rare and old", broker.SessionFilter{Contains: "pg_dump", Limit: 500}, []string{id(7), id(6)}},
		{"rare and old, one user", broker.SessionFilter{Contains: "pg_dump", User: "bob", Limit: 500}, []string{id(7)}},
		{"page needs older sessions", broker.SessionFilter{Contains: "tenth", Limit: 240}, ids(n-10, 0, 10)[:240]},
		{"every match, page larger", broker.SessionFilter{Contains: "tenth", Limit: 1000}, ids(n-10, 0, 10)},
		{"no limit", broker.SessionFilter{Contains: "tenth"}, ids(n-10, 0, 10)},
		{"paged past the newest", broker.SessionFilter{Contains: "tenth", Until: at(100 * time.Second), Limit: 3}, []string{id(90), id(80), id(70)}},
		{"two characters", broker.SessionFilter{Contains: "pg", Limit: 500}, []string{id(7), id(6)}},
		{"nothing", broker.SessionFilter{Contains: "rm -rf", Limit: 500}, nil},
	}
	view(t, s, func(tx broker.Tx) error {
		for _, c := range cases {
			got, err := tx.ListSessions(c.f)
			checkIDs(t, "ListSessions "+c.name, got, err, c.want...)
		}
		return nil
	})
}

func testState(t *testing.T, s broker.Store) {
	val := []byte{'{', 0, 0xff, '}'}
	update(t, s, func(tx broker.Tx) error {
		if err := tx.PutState("scheduler", val); err != nil {
			return err
		}
		return tx.PutState("empty", nil)
	})
	view(t, s, func(tx broker.Tx) error {
		got, err := tx.GetState("scheduler")
		if err != nil || !bytes.Equal(got, val) {
			t.Errorf("GetState = %q, %v; want %q", got, err, val)
		}
		got, err = tx.GetState("empty")
		if err != nil || got == nil || len(got) != 0 {
			t.Errorf("GetState(empty) = %#v, %v; want empty, non-nil", got, err)
		}
		return nil
	})
	update(t, s, func(tx broker.Tx) error { return tx.PutState("scheduler", []byte(`{"v":2}`)) })
	view(t, s, func(tx broker.Tx) error {
		got, err := tx.GetState("scheduler")
		if err != nil || string(got) != `{"v":2}` {
			t.Errorf("GetState after replace = %q, %v", got, err)
		}
		return nil
	})
}

func testNotFound(t *testing.T, s broker.Store) {
	view(t, s, func(tx broker.Tx) error {
		checks := map[string]func() error{
			"GetRequest":     func() error { _, err := tx.GetRequest("nope"); return err },
			"GetGrant":       func() error { _, err := tx.GetGrant("nope"); return err },
			"GetToken":       func() error { _, err := tx.GetToken("nope"); return err },
			"GetTokenByHash": func() error { _, err := tx.GetTokenByHash("nope"); return err },
			"GetSession":     func() error { _, err := tx.GetSession("nope"); return err },
			"GetState":       func() error { _, err := tx.GetState("nope"); return err },
		}
		for name, fn := range checks {
			err := fn()
			if !errors.Is(err, broker.ErrNotFound) {
				t.Errorf("%s: err = %v, want one wrapping ErrNotFound", name, err)
			} else if err == broker.ErrNotFound {
				t.Errorf("%s: bare ErrNotFound, want it wrapped with the operation", name)
			}
		}
		return nil
	})
}

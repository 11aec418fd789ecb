// Package evidencetest seeds a state store directly with a busy target's
// month: requests with approvals, grants, sessions with index entries and
// the audit records the broker would have written for them, so evidence
// bundles can be built and measured at scale without running sessions.
package evidencetest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
)

// Month is what Seed wrote.
type Month struct {
	Target   string
	From, To time.Time
	Grants   []broker.Grant
	Sessions []broker.Session
}

// Options shape the seeded month.
type Options struct {
	// Target is the busy target. Default: "busy-pg".
	Target string
	// From starts the month. Default: 2026-10-01 UTC.
	From time.Time
	// Sessions is how many sessions the month holds. Default: 3000.
	Sessions int
	// PerGrant is how many sessions run under one grant. Default: 10.
	PerGrant int
	// Other adds that many sessions on another target, which a bundle
	// must leave out. Default: 0.
	Other int
	// Tampered names sessions (by index) whose last verification in the
	// audit log failed.
	Tampered []int
}

// Seed writes the month into st, 100 sessions per transaction, with
// audit records stamped at the sessions' times.
func Seed(tb testing.TB, st broker.Store, o Options) Month {
	tb.Helper()
	if o.Target == "" {
		o.Target = "busy-pg"
	}
	if o.From.IsZero() {
		o.From = time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	}
	if o.Sessions == 0 {
		o.Sessions = 3000
	}
	if o.PerGrant == 0 {
		o.PerGrant = 10
	}
	m := Month{Target: o.Target, From: o.From, To: o.From.AddDate(0, 1, 0)}
	span := m.To.Sub(m.From)
	users := []string{"alice", "dave", "erika", "yusuf"}
	approvers := []string{"bob", "carol"}
	tampered := map[int]bool{}
	for _, i := range o.Tampered {
		tampered[i] = true
	}
	ctx := context.Background()
	total := o.Sessions + o.Other
	for start := 0; start < total; start += 100 {
		err := st.Update(ctx, func(tx broker.Tx) error {
			for i := start; i < min(start+100, total); i++ {
				target := o.Target
				if i >= o.Sessions {
					target = "quiet-ssh"
				}
				at := m.From.Add(time.Duration(int64(span) * int64(i%max(o.Sessions, 1)) / int64(max(o.Sessions, 1))))
				user, approver := users[i%len(users)], approvers[i%len(approvers)]
				var g broker.Grant
				if i%o.PerGrant == 0 || i == o.Sessions {
					g = grant(tx, tb, target, user, approver, at, i)
					if target == o.Target {
						m.Grants = append(m.Grants, g)
					}
				} else if target == o.Target {
					g = m.Grants[len(m.Grants)-1]
				} else {
					g = broker.Grant{ID: fmt.Sprintf("grt_other_%d", i/o.PerGrant), User: user}
				}
				s := session(tx, tb, g, target, at.Add(time.Minute), i, tampered[i])
				if target == o.Target {
					m.Sessions = append(m.Sessions, s)
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatalf("evidencetest: seed: %v", err)
		}
	}
	err := st.Update(ctx, func(tx broker.Tx) error {
		at := m.From.Add(36 * time.Hour)
		appendAudit(tx, tb, broker.AuditRecord{Time: at, Actor: "erin", Action: "breakglass.unseal", Target: "pg-admin",
			Outcome: "success", Reason: "INC-9 primary down", Details: js(`{"account":"pg-admin","target":%q}`, o.Target)})
		appendAudit(tx, tb, broker.AuditRecord{Time: at.Add(time.Hour), Actor: "erin", Action: "breakglass.close", Target: "pg-admin",
			Outcome: "success", Details: js(`{"account":"pg-admin","target":%q}`, o.Target)})
		return nil
	})
	if err != nil {
		tb.Fatalf("evidencetest: seed: %v", err)
	}
	return m
}

func appendAudit(tx broker.Tx, tb testing.TB, r broker.AuditRecord) {
	if _, err := tx.AppendAudit(r); err != nil {
		tb.Fatalf("evidencetest: audit %s: %v", r.Action, err)
	}
}

func grant(tx broker.Tx, tb testing.TB, target, user, approver string, at time.Time, i int) broker.Grant {
	req := broker.Request{ID: fmt.Sprintf("req_seed_%d", i), User: user, Target: target, Role: "readonly",
		Reason: fmt.Sprintf("INC-%d investigate", 1000+i), Ticket: fmt.Sprintf("INC-%d", 1000+i), Duration: 4 * time.Hour,
		State: broker.RequestApproved, Required: 1, CreatedAt: at, ExpiresAt: at.Add(time.Hour), DecidedAt: at.Add(30 * time.Second),
		Approvals: []broker.Decision{{By: approver, At: at.Add(30 * time.Second), Via: "web", Comment: "ok"}}}
	g := broker.Grant{ID: fmt.Sprintf("grt_seed_%d", i), RequestID: req.ID, User: user, Target: target, Role: "readonly",
		StartsAt: at.Add(30 * time.Second), EndsAt: at.Add(4 * time.Hour), Approvers: []string{approver},
		Reason: req.Reason, Ticket: req.Ticket, State: broker.GrantExpired}
	req.GrantID = g.ID
	if err := tx.PutRequest(req); err != nil {
		tb.Fatal(err)
	}
	if err := tx.PutGrant(g); err != nil {
		tb.Fatal(err)
	}
	appendAudit(tx, tb, broker.AuditRecord{Time: at, Actor: user, Action: "request.create", Target: target, Outcome: "success",
		Reason: req.Reason, Details: js(`{"request_id":%q,"role":"readonly"}`, req.ID)})
	appendAudit(tx, tb, broker.AuditRecord{Time: at.Add(30 * time.Second), Actor: approver, Action: "request.approve", Target: target,
		Outcome: "success", Details: js(`{"request_id":%q,"via":"web","meaning":"approved: access is justified"}`, req.ID)})
	appendAudit(tx, tb, broker.AuditRecord{Time: at.Add(30 * time.Second), Actor: "system", Action: "grant.create", Target: target,
		Outcome: "success", Reason: g.Reason, Details: js(`{"grant_id":%q,"request_id":%q}`, g.ID, req.ID)})
	return g
}

func session(tx broker.Tx, tb testing.TB, g broker.Grant, target string, at time.Time, i int, tampered bool) broker.Session {
	cmds := []string{
		fmt.Sprintf("SELECT id, status FROM orders WHERE id = $1 -- %d", i),
		"UPDATE orders SET status = $1 WHERE id = $2",
		"SELECT count(*) FROM invoices",
	}
	s := broker.Session{ID: fmt.Sprintf("ses_seed_%05d", i), GrantID: g.ID, User: g.User, Target: target, Role: "readonly",
		Protocol: "postgres", ClientAddr: "10.0.0.7", StartedAt: at, EndedAt: at.Add(12 * time.Minute),
		State: broker.SessionClosed, Bytes: 4096, Statements: int64(len(cmds)), Index: strings.Join(cmds, "\n"),
		ManifestHash: fmt.Sprintf("%064x", i)}
	if err := tx.PutSession(s); err != nil {
		tb.Fatal(err)
	}
	appendAudit(tx, tb, broker.AuditRecord{Time: at, Actor: g.User, Action: "session.start", Target: target, Outcome: "success",
		Details: js(`{"session_id":%q,"grant_id":%q}`, s.ID, g.ID)})
	appendAudit(tx, tb, broker.AuditRecord{Time: s.EndedAt, Actor: g.User, Action: "session.end", Target: target, Outcome: "success",
		Details: js(`{"session_id":%q}`, s.ID)})
	appendAudit(tx, tb, broker.AuditRecord{Time: s.EndedAt, Actor: "broker", Action: "session.recorded", Target: target,
		Outcome: "success", Details: js(`{"session_id":%q,"manifest_sha256":%q}`, s.ID, s.ManifestHash)})
	outcome, verdict := "success", "intact"
	if tampered {
		outcome, verdict = "error", "FAILED: chunk 2: hash mismatch"
	}
	appendAudit(tx, tb, broker.AuditRecord{Time: s.EndedAt.Add(time.Minute), Actor: "sam", Action: "session.verify", Target: target,
		Outcome: outcome, Reason: verdict, Details: js(`{"session_id":%q}`, s.ID)})
	return s
}

func js(format string, args ...any) []byte { return fmt.Appendf(nil, format, args...) }

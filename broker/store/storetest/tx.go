package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
)

func testTimeRoundTrip(t *testing.T, s broker.Store) {
	zone := time.FixedZone("UTC-7", -7*3600)
	tm := func(ns int) time.Time { return time.Date(2031, 12, 31, 23, 59, 59, ns, zone) }
	req := broker.Request{ID: "req_t", User: "u", Target: "t", State: broker.RequestApproved,
		CreatedAt: tm(1), ExpiresAt: tm(999999999), DecidedAt: tm(123456789),
		Approvals: []broker.Decision{{By: "a", At: tm(7)}}}
	g := broker.Grant{ID: "grt_t", StartsAt: tm(2), EndsAt: tm(3), RevokedAt: tm(4), State: broker.GrantRevoked}
	tok := broker.Token{ID: "tok_t", Hash: "h", CreatedAt: tm(5), ExpiresAt: tm(6)}
	ses := broker.Session{ID: "ses_t", StartedAt: tm(8), EndedAt: tm(9)}
	var rec broker.AuditRecord
	update(t, s, func(tx broker.Tx) error {
		err := errors.Join(tx.PutRequest(req), tx.PutGrant(g), tx.PutToken(tok), tx.PutSession(ses))
		if err != nil {
			return err
		}
		rec, err = tx.AppendAudit(broker.AuditRecord{Time: tm(10), Actor: "a", Action: "x", Outcome: "success"})
		return err
	})
	check := func(what string, got, want time.Time) {
		t.Helper()
		if !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("%s = %v (%v), want %v in UTC", what, got, got.Location(), want)
		}
	}
	view(t, s, func(tx broker.Tx) error {
		r, err := tx.GetRequest("req_t")
		if err != nil {
			t.Fatal(err)
		}
		check("Request.CreatedAt", r.CreatedAt, req.CreatedAt)
		check("Request.ExpiresAt", r.ExpiresAt, req.ExpiresAt)
		check("Request.DecidedAt", r.DecidedAt, req.DecidedAt)
		check("Decision.At", r.Approvals[0].At, req.Approvals[0].At)
		gg, err := tx.GetGrant("grt_t")
		if err != nil {
			t.Fatal(err)
		}
		check("Grant.StartsAt", gg.StartsAt, g.StartsAt)
		check("Grant.EndsAt", gg.EndsAt, g.EndsAt)
		check("Grant.RevokedAt", gg.RevokedAt, g.RevokedAt)
		tt, err := tx.GetToken("tok_t")
		if err != nil {
			t.Fatal(err)
		}
		check("Token.CreatedAt", tt.CreatedAt, tok.CreatedAt)
		check("Token.ExpiresAt", tt.ExpiresAt, tok.ExpiresAt)
		ss, err := tx.GetSession("ses_t")
		if err != nil {
			t.Fatal(err)
		}
		check("Session.StartedAt", ss.StartedAt, ses.StartedAt)
		check("Session.EndedAt", ss.EndedAt, ses.EndedAt)
		as, err := tx.ListAudit(broker.AuditFilter{})
		if err != nil || len(as) != 1 {
			t.Fatalf("ListAudit = %v, %v", as, err)
		}
		check("AuditRecord.Time", as[0].Time, tm(10))
		check("returned AuditRecord.Time", rec.Time, tm(10))
		if as[0].ComputeHash() != as[0].Hash {
			t.Errorf("stored audit time no longer hashes to the stored hash")
		}
		return nil
	})
}

func testViewIsReadOnly(t *testing.T, s broker.Store) {
	writes := map[string]func(broker.Tx) error{
		"PutRequest":  func(tx broker.Tx) error { return tx.PutRequest(broker.Request{ID: "req_v"}) },
		"PutGrant":    func(tx broker.Tx) error { return tx.PutGrant(broker.Grant{ID: "grt_v"}) },
		"PutToken":    func(tx broker.Tx) error { return tx.PutToken(broker.Token{ID: "tok_v", Hash: "h"}) },
		"PutSession":  func(tx broker.Tx) error { return tx.PutSession(broker.Session{ID: "ses_v"}) },
		"PutState":    func(tx broker.Tx) error { return tx.PutState("k", []byte("v")) },
		"DeleteToken": func(tx broker.Tx) error { return tx.DeleteToken("tok_v") },
		"DeleteExpiredTokens": func(tx broker.Tx) error {
			_, err := tx.DeleteExpiredTokens(base)
			return err
		},
		"AppendAudit": func(tx broker.Tx) error {
			_, err := tx.AppendAudit(broker.AuditRecord{Actor: "a", Action: "b", Outcome: "c"})
			return err
		},
	}
	for name, w := range writes {
		err := s.View(t.Context(), func(tx broker.Tx) error { return w(tx) })
		if err == nil {
			t.Errorf("%s inside View succeeded", name)
		}
	}
}

var errAbort = errors.New("abort")

func testUpdateRollback(t *testing.T, s broker.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	events := s.GrantEvents(ctx)
	err := s.Update(ctx, func(tx broker.Tx) error {
		if err := tx.PutRequest(broker.Request{ID: "req_rb", User: "u", CreatedAt: at(0)}); err != nil {
			return err
		}
		if err := tx.PutGrant(broker.Grant{ID: "grt_rb", StartsAt: at(0), EndsAt: at(time.Hour)}); err != nil {
			return err
		}
		if err := tx.PutToken(broker.Token{ID: "tok_rb", Hash: "h"}); err != nil {
			return err
		}
		if err := tx.PutSession(broker.Session{ID: "ses_rb"}); err != nil {
			return err
		}
		if err := tx.PutState("rb", []byte("x")); err != nil {
			return err
		}
		if _, err := tx.AppendAudit(broker.AuditRecord{Actor: "a", Action: "rolled.back", Outcome: "success"}); err != nil {
			return err
		}
		// Reads inside the transaction see its own writes.
		if _, err := tx.GetRequest("req_rb"); err != nil {
			return err
		}
		tx.NotifyGrant(broker.GrantEvent{GrantID: "grt_rb", State: broker.GrantRevoked})
		return errAbort
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("Update returned %v, want the callback's error", err)
	}
	view(t, s, func(tx broker.Tx) error {
		for name, err := range map[string]error{
			"request": second(tx.GetRequest("req_rb")),
			"grant":   second(tx.GetGrant("grt_rb")),
			"token":   second(tx.GetToken("tok_rb")),
			"session": second(tx.GetSession("ses_rb")),
			"state":   second(tx.GetState("rb")),
		} {
			if !errors.Is(err, broker.ErrNotFound) {
				t.Errorf("%s persisted after rollback (err = %v)", name, err)
			}
		}
		recs, err := tx.ListAudit(broker.AuditFilter{})
		if err != nil || len(recs) != 0 {
			t.Errorf("audit after rollback = %v, %v; want none", recs, err)
		}
		return nil
	})
	// The next committed append starts the chain at 1, and the next event
	// delivered is the committed one.
	var rec broker.AuditRecord
	update(t, s, func(tx broker.Tx) error {
		tx.NotifyGrant(broker.GrantEvent{GrantID: "grt_ok", State: broker.GrantActive})
		var err error
		rec, err = tx.AppendAudit(broker.AuditRecord{Actor: "a", Action: "committed", Outcome: "success"})
		return err
	})
	if rec.Seq != 1 {
		t.Errorf("first committed record has seq %d, want 1", rec.Seq)
	}
	if ev := nextEvent(t, events); ev.GrantID != "grt_ok" {
		t.Errorf("first event delivered = %+v, want grt_ok (the rolled-back event leaked)", ev)
	}
}

func second[T any](_ T, err error) error { return err }

func nextEvent(t *testing.T, ch <-chan broker.GrantEvent) broker.GrantEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("GrantEvents channel closed")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no grant event within 10s")
	}
	return broker.GrantEvent{}
}

// noEvent fails if an event arrives within d.
func noEvent(t *testing.T, ch <-chan broker.GrantEvent, d time.Duration, why string) {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if ok {
			t.Errorf("%s: unexpected event %+v", why, ev)
		}
	case <-time.After(d):
	}
}

func testGrantEvents(t *testing.T, s broker.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	a, b := s.GrantEvents(ctx), s.GrantEvents(ctx)
	e1 := broker.GrantEvent{GrantID: "grt_1", State: broker.GrantRevoked, Reason: "revoked by sec"}
	e2 := broker.GrantEvent{GrantID: "grt_2", State: broker.GrantExpired}
	update(t, s, func(tx broker.Tx) error {
		tx.NotifyGrant(e1)
		tx.NotifyGrant(e2)
		noEvent(t, a, 200*time.Millisecond, "before commit")
		return nil
	})
	for name, ch := range map[string]<-chan broker.GrantEvent{"a": a, "b": b} {
		mustEqual(t, name+" first event", nextEvent(t, ch), e1)
		mustEqual(t, name+" second event", nextEvent(t, ch), e2)
	}
	// Each event arrives once, also on stores that hear their own
	// notifications back from the database.
	noEvent(t, a, 500*time.Millisecond, "after the two events")

	// A subscriber that stops reading does not hold up the others.
	c := s.GrantEvents(ctx)
	for i := range 50 {
		update(t, s, func(tx broker.Tx) error {
			tx.NotifyGrant(broker.GrantEvent{GrantID: "grt_many", Reason: string(rune('a' + i%26))})
			return nil
		})
	}
	for i := range 50 {
		if ev := nextEvent(t, a); ev.Reason != string(rune('a'+i%26)) {
			t.Fatalf("event %d out of order: %+v", i, ev)
		}
	}
	_ = c

	cctx, ccancel := context.WithCancel(ctx)
	d := s.GrantEvents(cctx)
	ccancel()
	select {
	case _, ok := <-d:
		if ok {
			t.Error("event on a cancelled subscription")
		}
	case <-time.After(5 * time.Second):
		t.Error("GrantEvents channel not closed after its context ended")
	}
}

func testGrantEventsClose(t *testing.T, s broker.Store) {
	ch := s.GrantEvents(t.Context())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-ch:
		if ok {
			t.Error("event after Close")
		}
	case <-time.After(5 * time.Second):
		t.Error("GrantEvents channel not closed by Close")
	}
}

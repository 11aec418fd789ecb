// Package storetest is the conformance suite every broker.Store
// implementation runs: CRUD and every filter of every entity, error
// wrapping, transaction rollback, grant events after commit, exact time
// round-trips, concurrent audit appends that must form one chain, and
// tamper detection on rows edited behind the store's back.
package storetest

import (
	"context"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
)

// Run runs the suite. open returns a new, empty store for each subtest and
// arranges for it to be closed when the test ends.
func Run(t *testing.T, open func(t *testing.T) broker.Store) {
	t.Run("Requests", func(t *testing.T) { testRequests(t, open(t)) })
	t.Run("Grants", func(t *testing.T) { testGrants(t, open(t)) })
	t.Run("Tokens", func(t *testing.T) { testTokens(t, open(t)) })
	t.Run("DeleteExpiredTokens", func(t *testing.T) { testDeleteExpiredTokens(t, open(t)) })
	t.Run("Sessions", func(t *testing.T) { testSessions(t, open(t)) })
	t.Run("SessionSearchAtScale", func(t *testing.T) { testSessionSearchAtScale(t, open(t)) })
	t.Run("State", func(t *testing.T) { testState(t, open(t)) })
	t.Run("Limits", func(t *testing.T) { testLimits(t, open(t)) })
	t.Run("NotFound", func(t *testing.T) { testNotFound(t, open(t)) })
	t.Run("TimeRoundTrip", func(t *testing.T) { testTimeRoundTrip(t, open(t)) })
	t.Run("ViewIsReadOnly", func(t *testing.T) { testViewIsReadOnly(t, open(t)) })
	t.Run("UpdateRollback", func(t *testing.T) { testUpdateRollback(t, open(t)) })
	t.Run("GrantEvents", func(t *testing.T) { testGrantEvents(t, open(t)) })
	t.Run("GrantEventsClose", func(t *testing.T) { testGrantEventsClose(t, open(t)) })
	t.Run("AuditAppend", func(t *testing.T) { testAuditAppend(t, open(t)) })
	t.Run("AuditFilters", func(t *testing.T) { testAuditFilters(t, open(t)) })
	t.Run("AuditConcurrent", func(t *testing.T) { testAuditConcurrent(t, open(t)) })
	t.Run("ReadModifyWrite", func(t *testing.T) { testReadModifyWrite(t, open(t)) })
	t.Run("Ping", func(t *testing.T) {
		if err := open(t).Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

// base is a time with nanoseconds in a zone other than UTC, so every test
// also checks that stores keep nanoseconds and compare instants, not text.
var base = time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.FixedZone("UTC+1", 3600))

// at returns base plus d, in UTC, for values compared with DeepEqual.
func at(d time.Duration) time.Time { return base.Add(d).UTC() }

func update(t *testing.T, s broker.Store, fn func(broker.Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func view(t *testing.T, s broker.Store, fn func(broker.Tx) error) {
	t.Helper()
	if err := s.View(context.Background(), fn); err != nil {
		t.Fatalf("View: %v", err)
	}
}

// ids returns the ID of each element, for comparing list results.
func ids[T any](t *testing.T, list []T) []string {
	t.Helper()
	out := []string{}
	for _, v := range list {
		out = append(out, reflect.ValueOf(v).FieldByName("ID").String())
	}
	return out
}

// checkIDs fails unless got lists exactly want, in order.
func checkIDs[T any](t *testing.T, name string, got []T, err error, want ...string) {
	t.Helper()
	if err != nil {
		t.Errorf("%s: %v", name, err)
		return
	}
	if want == nil {
		want = []string{}
	}
	if g := ids(t, got); !slices.Equal(g, want) {
		t.Errorf("%s = %v, want %v", name, g, want)
	}
}

func mustEqual(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got  %+v\n want %+v", what, got, want)
	}
}

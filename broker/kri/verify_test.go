package kri_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/kri"
)

// verdicts answers verifications from a table and counts them.
type verdicts struct {
	mu    sync.Mutex
	bad   map[string]bool
	calls map[string]int
}

func (v *verdicts) Verify(_ context.Context, id string) (bool, string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.calls[id]++
	if v.bad[id] {
		return false, "chunk 2 hash mismatch", nil
	}
	return true, "intact", nil
}

// The evaluator verifies recordings no one verified, once each, on one
// replica; a failing one shows on recordings_failing_verification and
// keeps its session on sessions_without_recording.
func TestKRIVerifierRecordsVerdicts(t *testing.T) {
	e := newEnv(t)
	good := e.session(broker.Session{User: "alice", StartedAt: e.now.Add(-2 * time.Hour), EndedAt: e.now.Add(-time.Hour), State: broker.SessionClosed, ManifestHash: "h1"})
	bad := e.session(broker.Session{User: "bob", StartedAt: e.now.Add(-2 * time.Hour), EndedAt: e.now.Add(-time.Hour), State: broker.SessionClosed, ManifestHash: "h2"})
	fresh := e.session(broker.Session{User: "bob", StartedAt: e.now.Add(-2 * time.Minute), EndedAt: e.now.Add(-time.Minute), State: broker.SessionClosed, ManifestHash: "h3"})
	if v := value(e.get("sessions_without_recording")); v != 2 {
		t.Fatalf("before verification: %v sessions without a verified recording, want 2", v)
	}
	v := &verdicts{bad: map[string]bool{bad.ID: true}, calls: map[string]int{}}
	var evs []*kri.Evaluator
	for _, r := range []string{"a", "b"} {
		ev, err := kri.NewEvaluator(kri.EvaluatorOptions{Computer: e.c, Store: e.st, Audit: e.log, Verifier: v,
			Replica: r, Now: e.clock})
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	for range 3 {
		for _, ev := range evs {
			if _, err := ev.Evaluate(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if v.calls[good.ID] != 1 || v.calls[bad.ID] != 1 || v.calls[fresh.ID] != 0 {
		t.Fatalf("verifications %v: want each ended session once, the one just ended not yet", v.calls)
	}
	fail := e.get("recordings_failing_verification")
	if value(fail) != 1 || !hasRecord(fail, bad.ID) {
		t.Fatalf("failing %+v", fail)
	}
	without := e.get("sessions_without_recording")
	if value(without) != 1 || !hasRecord(without, bad.ID) {
		t.Fatalf("without %+v", without)
	}
}

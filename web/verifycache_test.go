package web

import (
	"context"
	"strconv"
	"testing"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/recorder"
)

// stillStoring answers every verification as the recorder does for a
// session that ended but is not stored yet.
type stillStoring struct{ recordings }

func (stillStoring) Verify(context.Context, string) (*recorder.VerifyReport, error) {
	return &recorder.VerifyReport{State: "pending", Verdict: "FAILED: manifest: not written yet"}, nil
}

// A recording still on its way to the store is not remembered as failed:
// the table shows it pending and checks again.
func TestVerifyCacheDoesNotKeepPending(t *testing.T) {
	c := newVerifyCache()
	s := broker.Session{ID: "ses_storing", State: broker.SessionClosed}
	rep, _ := stillStoring{}.Verify(context.Background(), s.ID)
	c.put(s, rep)
	if st := c.status(s, stillStoring{}); st.Status != "pending" {
		t.Fatalf("status of a recording still being stored: %+v", st)
	}
}

// The results kept are bounded however many sessions are ever shown, and
// the newest result is always kept.
func TestVerifyCacheBounded(t *testing.T) {
	c := newVerifyCache()
	rep := &recorder.VerifyReport{State: "closed", Intact: true, Verdict: "INTACT"}
	var last broker.Session
	for i := range maxVerifyResults + 100 {
		last = broker.Session{ID: "ses_" + strconv.Itoa(i), State: broker.SessionClosed, ManifestHash: "h"}
		c.put(last, rep)
	}
	if n := len(c.results); n > maxVerifyResults {
		t.Fatalf("%d results kept, want at most %d", n, maxVerifyResults)
	}
	if e, ok := c.results[last.ID]; !ok || e.state.Status != "intact" {
		t.Fatalf("the newest result was dropped: %+v", e)
	}
}

package retrieval_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/retrieval"
	"github.com/custos-pam/custos/broker/store/sqlite"
)

// TestRecord: a question passes only when answered, without error and
// within five minutes, whatever the client claimed; the pass rate and the
// audit outcome follow.
func TestRecord(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	log := audit.NewLog(st)
	for _, c := range []struct {
		name     string
		qs       []retrieval.Question
		wantRate float64
		outcome  string
	}{
		{"all within", []retrieval.Question{{Q: "a", MS: 10, Pass: true}, {Q: "b", MS: 299_999, Pass: true}}, 1, broker.OutcomeSuccess},
		{"exactly five minutes", []retrieval.Question{{Q: "a", MS: retrieval.Limit.Milliseconds(), Pass: true}}, 1, broker.OutcomeSuccess},
		{"too slow", []retrieval.Question{{Q: "a", MS: 10, Pass: true}, {Q: "b", MS: 300_001, Pass: true}}, 0.5, broker.OutcomeError},
		{"error", []retrieval.Question{{Q: "a", MS: 10, Pass: true, Error: "not found"}}, 0, broker.OutcomeError},
		{"client says fail", []retrieval.Question{{Q: "a", MS: 10, Pass: false}}, 0, broker.OutcomeError},
		{"negative time", []retrieval.Question{{Q: "a", MS: -1, Pass: true}}, 0, broker.OutcomeError},
	} {
		t.Run(c.name, func(t *testing.T) {
			run, err := retrieval.Record(t.Context(), st, log, "sam", time.Now(), c.qs)
			if err != nil {
				t.Fatal(err)
			}
			if run.PassRate != c.wantRate {
				t.Errorf("pass rate %v, want %v", run.PassRate, c.wantRate)
			}
			var recs []broker.AuditRecord
			_ = st.View(t.Context(), func(tx broker.Tx) error {
				recs, err = tx.ListAudit(broker.AuditFilter{ActionPrefix: "drill.retrieval"})
				return err
			})
			if last := recs[len(recs)-1]; last.Outcome != c.outcome || last.Actor != "sam" {
				t.Errorf("audit %s by %s, want %s", last.Outcome, last.Actor, c.outcome)
			}
		})
	}
	s, err := retrieval.Load(t.Context(), st)
	if err != nil || len(s.Runs) != 6 {
		t.Fatalf("runs kept: %d %v", len(s.Runs), err)
	}
	if _, err := retrieval.Record(t.Context(), st, log, "sam", time.Now(), nil); broker.CodeOf(err) != "no_questions" {
		t.Errorf("empty run: %v", err)
	}
}

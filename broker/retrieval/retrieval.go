// Package retrieval keeps the results of five-minute retrieval drills:
// `custos drill retrieval` asks a seeded set of inspector questions
// through the API, times each, and files the run here. Runs are kept in
// the state store under StateKey as {"runs":[{at, by, questions:[{q, ms,
// pass}], pass_rate}]}, newest last, for the retrieval pass-rate
// indicator to read; each run is also an audit record.
package retrieval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// StateKey is where the runs are kept.
const StateKey = "drill.retrieval"

// Limit is the time an answer may take and still pass.
const Limit = 5 * time.Minute

// MaxRuns is how many runs are kept; older ones stay in the audit log.
const MaxRuns = 500

// Question is one question of a run: what was asked, how long the answer
// took in milliseconds, and whether it came within Limit, complete.
type Question struct {
	Q    string `json:"q"`
	MS   int64  `json:"ms"`
	Pass bool   `json:"pass"`
	// Error says why a question failed other than by time.
	Error string `json:"error,omitempty"`
}

// Run is one drill.
type Run struct {
	At        time.Time  `json:"at"`
	By        string     `json:"by"`
	Questions []Question `json:"questions"`
	PassRate  float64    `json:"pass_rate"`
}

// State is the document under StateKey.
type State struct {
	Runs []Run `json:"runs"`
}

// appender appends inside a transaction; *audit.Log implements it.
type appender interface {
	AppendTx(ctx context.Context, tx broker.Tx, e audit.Entry) (broker.AuditRecord, error)
}

// Record files a run: a question passes only when it was answered and
// within Limit, whatever the caller claimed. The run and its audit
// record commit together.
func Record(ctx context.Context, st broker.Store, log appender, by string, at time.Time, qs []Question) (Run, error) {
	if len(qs) == 0 {
		return Run{}, broker.Refuse(broker.KindInvalid, "no_questions", "a retrieval drill needs at least one question")
	}
	run := Run{At: at.UTC(), By: by, Questions: make([]Question, len(qs))}
	passed := 0
	for i, q := range qs {
		q.Q = strings.TrimSpace(q.Q)
		q.Pass = q.Pass && q.Error == "" && q.MS >= 0 && time.Duration(q.MS)*time.Millisecond <= Limit
		if q.Pass {
			passed++
		}
		run.Questions[i] = q
	}
	run.PassRate = float64(passed) / float64(len(qs))
	err := st.Update(ctx, func(tx broker.Tx) error {
		s, err := load(tx)
		if err != nil {
			return err
		}
		s.Runs = append(s.Runs, run)
		if len(s.Runs) > MaxRuns {
			s.Runs = s.Runs[len(s.Runs)-MaxRuns:]
		}
		b, err := json.Marshal(s)
		if err != nil {
			return err
		}
		if err := tx.PutState(StateKey, b); err != nil {
			return err
		}
		outcome := broker.OutcomeSuccess
		if passed < len(qs) {
			outcome = broker.OutcomeError
		}
		_, err = log.AppendTx(ctx, tx, audit.Entry{Actor: by, Action: "drill.retrieval", Outcome: outcome,
			Reason:  fmt.Sprintf("%d of %d questions answered within %v", passed, len(qs), Limit),
			Details: map[string]any{"questions": run.Questions, "pass_rate": run.PassRate}})
		return err
	})
	if err != nil {
		return Run{}, fmt.Errorf("retrieval drill: %w", err)
	}
	return run, nil
}

// Load returns the kept runs.
func Load(ctx context.Context, st broker.Store) (State, error) {
	var s State
	err := st.View(ctx, func(tx broker.Tx) error {
		var err error
		s, err = load(tx)
		return err
	})
	if err != nil {
		return State{}, fmt.Errorf("retrieval drill: %w", err)
	}
	return s, nil
}

func load(tx broker.Tx) (State, error) {
	s := State{Runs: []Run{}}
	b, err := tx.GetState(StateKey)
	if errors.Is(err, broker.ErrNotFound) || (err == nil && len(b) == 0) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("state: %w", err)
	}
	return s, nil
}

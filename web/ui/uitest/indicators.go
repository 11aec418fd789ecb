package uitest

import (
	"log/slog"
	"testing"

	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/broker/kri"
	"github.com/custos-pam/custos/web"
)

// startIndicators builds the risk indicators' evaluator over the env's
// store, its notices landing in Notices and its gauges on srv's
// /metrics. It does not run periodically: tests call Evaluate.
func (e *Env) startIndicators(tb testing.TB, srv *web.Server, dir *identity.Directory, log *slog.Logger) {
	tb.Helper()
	c, err := kri.New(kri.Options{Config: e.Config, Directory: dir, Store: e.State, Drills: e.BreakGlass})
	if err != nil {
		tb.Fatalf("uitest: indicators: %v", err)
	}
	ev, err := kri.NewEvaluator(kri.EvaluatorOptions{Computer: c, Store: e.State, Audit: e.Audit,
		Notifier: e.Notices, Registry: srv.Registry(), PublicURL: e.URL, Log: log})
	if err != nil {
		tb.Fatalf("uitest: indicators: %v", err)
	}
	e.Indicators = ev
}

package app

import (
	"context"
	"log/slog"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/breakglass"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/broker/kri"
	"github.com/custos-pam/custos/recorder"
	"github.com/custos-pam/custos/web"
)

// recordingVerifier adapts the recorder to the indicators' background
// verifier.
type recordingVerifier struct{ rec *recorder.Recorder }

func (v recordingVerifier) Verify(ctx context.Context, id string) (bool, string, error) {
	rep, err := v.rec.Verify(ctx, id)
	if err != nil {
		return false, "", err
	}
	return rep.Intact, rep.Verdict, nil
}

// startIndicators builds the risk indicators and starts the evaluator of
// their limits with serve (it stops with ctx), reading users, targets,
// policies and the indicators section from the live config a reload swaps: it verifies recordings no
// one verified yet, raises limit crossings (security channel, audit,
// /metrics) and keeps the actions. bg and notify may be nil.
func startIndicators(ctx context.Context, cfg *config.Config, live *config.Live, dir *identity.Directory, ids *identity.Service, st broker.Store, auditLog *audit.Log, bg *breakglass.Service,
	rec *recorder.Recorder, notify securityNotifier, srv *web.Server, log *slog.Logger, serve func(func())) (*kri.Evaluator, error) {
	o := kri.Options{Config: cfg, Live: live, Directory: dir, Factors: ids, Store: st}
	if bg != nil {
		o.Drills = bg
	}
	c, err := kri.New(o)
	if err != nil {
		return nil, err
	}
	eo := kri.EvaluatorOptions{Computer: c, Store: st, Audit: auditLog, Registry: srv.Registry(),
		PublicURL: cfg.PublicURL, Replica: cfg.Listen.AdvertiseURL, Log: log}
	if notify != nil {
		eo.Notifier = notify
	}
	if rec != nil {
		eo.Verifier = recordingVerifier{rec}
	}
	ev, err := kri.NewEvaluator(eo)
	if err != nil {
		return nil, err
	}
	serve(func() { ev.Run(ctx) })
	return ev, nil
}

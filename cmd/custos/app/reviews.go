package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/esign"
	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/broker/metrics"
	"github.com/custos-pam/custos/broker/review"
	"github.com/custos-pam/custos/web"
)

// startReviews builds the access review service: attestations are
// electronic signatures by sg (action review), and custos_review_overdue
// is served on srv's /metrics.
func startReviews(live *config.Live, dir *identity.Directory, sg *esign.Signer, st broker.Store, auditLog *audit.Log,
	srv *web.Server, log *slog.Logger) (*review.Service, error) {
	svc, err := review.New(review.Options{Config: live, Directory: dir, Store: st, Audit: auditLog, Signer: sg, Log: log})
	if err != nil {
		return nil, err
	}
	err = metrics.RegisterReviewOverdue(srv.Registry(), func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		return svc.Overdue(ctx)
	})
	if err != nil {
		return nil, err
	}
	return svc, nil
}

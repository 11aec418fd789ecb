package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/broker/metrics"
	"github.com/custos-pam/custos/broker/review"
	"github.com/custos-pam/custos/web"
)

// startReviews builds the access review service: attestations are signed
// by re-authenticating with the identity service (password and TOTP,
// counted against the sign-in limiter), and custos_review_overdue is
// served on srv's /metrics.
func startReviews(live *config.Live, dir *identity.Directory, ids *identity.Service, st broker.Store, auditLog *audit.Log,
	srv *web.Server, log *slog.Logger) (*review.Service, error) {
	svc, err := review.New(review.Options{Config: live, Directory: dir, Store: st, Audit: auditLog,
		Signer: review.PasswordSigner{Auth: ids, Directory: dir}, Log: log})
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

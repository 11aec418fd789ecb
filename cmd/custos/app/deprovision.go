package app

import (
	"context"
	"log/slog"

	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/identity"
)

// deprovision ends the access of users disabled in, or removed from, the
// config the broker starts with: their tokens are deleted and their
// grants revoked (ending their live sessions on every replica through the
// grant events) and pending requests cancelled, each with an audit record.
// A failure stops the start: a broker must not serve with a disabled
// user's access still standing.
func deprovision(ctx context.Context, ids *identity.Service, acc *access.Service, log *slog.Logger) error {
	n, err := ids.RevokeDisabled(ctx)
	if err != nil {
		return err
	}
	d, err := acc.RevokeDisabled(ctx)
	if err != nil {
		return err
	}
	if n > 0 || len(d.Grants) > 0 || len(d.Requests) > 0 {
		log.Info("access of disabled or removed users ended", "tokens", n, "grants", len(d.Grants), "requests", len(d.Requests))
	}
	return nil
}

// deprovisionUser ends one user's access at once, whatever the directory
// says: tokens deleted, grants revoked (their live sessions end on every
// replica through the grant events), pending requests cancelled, each
// with its audit record carrying reason. SCIM provisioning calls it when
// it deactivates or deletes a user or removes them from a group.
func deprovisionUser(ctx context.Context, ids *identity.Service, acc *access.Service, user, reason string, log *slog.Logger) error {
	n, err := ids.RevokeUserTokens(ctx, user, reason)
	if err != nil {
		return err
	}
	d, err := acc.RevokeUser(ctx, user, reason)
	if err != nil {
		return err
	}
	log.Info("access ended", "user", user, "reason", reason, "tokens", n, "grants", len(d.Grants), "requests", len(d.Requests))
	return nil
}

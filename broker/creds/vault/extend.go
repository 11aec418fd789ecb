package vault

import (
	"context"
	"errors"
	"fmt"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/custos-pam/custos/broker"
)

// ExtendGrant carries an approved extension of grant g to the database
// logins this process issued for it: each login's per-grant token and its
// lease are renewed to the grant's new end (which moves the role's VALID
// UNTIL), and the lease records take the new end, so neither Vault nor
// the sweep ends a live session at the old end. It renews to the grant's
// end and no further; the grant's end is bounded by the role's
// max_duration (policy), and Vault caps a renewal at the custos-grant
// token role's token_explicit_max_ttl. Logins another replica issued are
// that replica's to renew. A failure is returned and audited
// (creds.renew); the login then ends at the old end.
func (i *Issuer) ExtendGrant(ctx context.Context, g broker.Grant) error {
	left, err := i.checkActive(g)
	if err != nil {
		return nil // ended meanwhile: revocation takes it from here
	}
	i.mu.Lock()
	gc := i.grants[g.ID]
	i.mu.Unlock()
	if gc == nil {
		return nil
	}
	gc.mu.Lock()
	defer gc.mu.Unlock()
	var list []*issued
	if gc.shared != nil {
		list = append(list, gc.shared)
	}
	for _, iss := range gc.sessions {
		list = append(list, iss)
	}
	end := g.EffectiveEnd()
	var errs []error
	var recs []leaseRecord
	for _, iss := range list {
		if !end.After(iss.grantEnd) {
			continue
		}
		if err := i.renewToken(ctx, iss.token, left); err != nil {
			errs = append(errs, err)
			continue
		}
		got, err := i.renew(ctx, g, iss, left)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		iss.grantEnd = end
		iss.lease.ExpiresAt = i.now().Add(got)
		if end.Before(iss.lease.ExpiresAt) {
			iss.lease.ExpiresAt = end // the broker revokes at the grant's end
		}
		for _, r := range i.records(func(r leaseRecord) bool { return r.LeaseID == iss.lease.LeaseID }) {
			r.ExpiresAt, r.GrantEnd = iss.lease.ExpiresAt.UTC(), end.UTC()
			recs = append(recs, r)
		}
	}
	if len(recs) > 0 {
		if err := i.updateIndex(ctx, recs, nil); err != nil {
			errs = append(errs, err)
		}
		i.log.Info("database logins extended with their grant", "grant_id", g.ID, "logins", len(recs), "expires_at", end.UTC())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("creds: extend grant %s: %w", g.ID, err)
	}
	return nil
}

// renewToken renews a per-grant token (it renews itself) to live d more.
func (i *Issuer) renewToken(ctx context.Context, token string, d time.Duration) error {
	s, err := i.c.callAs(ctx, token, "renew token", func(ctx context.Context, api *vaultapi.Client) (*vaultapi.Secret, error) {
		return api.Auth().Token().RenewSelfWithContext(ctx, int(vaultLife(d)/time.Second))
	})
	if err != nil {
		return err
	}
	if s == nil || s.Auth == nil || time.Duration(s.Auth.LeaseDuration)*time.Second < d-time.Second {
		return errors.New("vault: renew token: renewed for less than the grant's new end (is the custos-grant token role renewable?)")
	}
	return nil
}

package access

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// BreakGlassGrant is the grant an unsealed break-glass account opens for
// the custodian who asked: the account's role on its target until the open
// window ends, used through the proxies like any grant.
type BreakGlassGrant struct {
	// Account is the break-glass account's name.
	Account string
	// UnsealID is the unseal request, named in the audit record. The
	// grant has no RequestID: no access request was made.
	UnsealID string
	User     string
	Target   string
	Role     string
	Until    time.Time
	// Custodians are those who confirmed the unseal.
	Custodians []string
	Reason     string
	Incident   string
}

// refuseBreakGlassRole refuses ordinary requests for a role that a
// break-glass account uses: its grants come only from unseals.
func (s *Service) refuseBreakGlassRole(target, role string) error {
	if a, ok := s.cfg.Load().BreakGlassFor(target, role); ok {
		return refuse(broker.KindForbidden, "breakglass_role",
			"role %s of %s is the sealed break-glass account %s: run custos breakglass unseal %s", role, target, a.Name, a.Name)
	}
	return nil
}

// GrantBreakGlassTx creates the grant of an unsealed break-glass account
// inside the caller's transaction, with its audit record. Call
// AnnounceGrant after the transaction commits.
func (s *Service) GrantBreakGlassTx(ctx context.Context, tx broker.Tx, in BreakGlassGrant) (broker.Grant, error) {
	if in.Account == "" || in.User == "" || in.Target == "" || in.Role == "" {
		return broker.Grant{}, errors.New("break-glass grant: account, user, target and role are required")
	}
	now := s.now().UTC()
	if !in.Until.After(now) {
		return broker.Grant{}, fmt.Errorf("break-glass grant: window ended at %s", in.Until.UTC().Format(time.RFC3339))
	}
	g := broker.Grant{
		ID: broker.NewID("gr"), User: in.User, Target: in.Target, Role: in.Role,
		StartsAt: now, EndsAt: in.Until.UTC(), Approvers: append([]string{}, in.Custodians...),
		Reason: in.Reason, Ticket: in.Incident, State: broker.GrantActive, BreakGlass: in.Account,
	}
	if err := tx.PutGrant(g); err != nil {
		return broker.Grant{}, fmt.Errorf("break-glass grant: %w", err)
	}
	tx.NotifyGrant(broker.GrantEvent{GrantID: g.ID, State: g.State})
	d := grantDetails(g)
	d["break_glass"], d["unseal_id"] = in.Account, in.UnsealID
	if _, err := s.audit.AppendTx(ctx, tx, audit.Entry{Actor: "system", Action: "grant.create", Target: g.Target,
		Outcome: broker.OutcomeSuccess, Reason: g.Reason, Details: d}); err != nil {
		return broker.Grant{}, err
	}
	return g, nil
}

// EndBreakGlassTx revokes a break-glass grant inside the caller's
// transaction when the account closes; live sessions on it are ended by
// the grant event. A grant that already ended is returned unchanged. Call
// AnnounceGrant after the transaction commits.
func (s *Service) EndBreakGlassTx(ctx context.Context, tx broker.Tx, grantID, actor, reason string) (broker.Grant, error) {
	g, err := tx.GetGrant(grantID)
	if err != nil {
		return broker.Grant{}, fmt.Errorf("end break-glass grant %s: %w", grantID, err)
	}
	if g.BreakGlass == "" {
		return broker.Grant{}, fmt.Errorf("end break-glass grant %s: not a break-glass grant", grantID)
	}
	if g.State != broker.GrantActive {
		return g, nil
	}
	g.State, g.RevokedAt, g.RevokedBy, g.RevokeReason = broker.GrantRevoked, s.now().UTC(), actor, reason
	if err := tx.PutGrant(g); err != nil {
		return broker.Grant{}, fmt.Errorf("end break-glass grant %s: %w", grantID, err)
	}
	tx.NotifyGrant(broker.GrantEvent{GrantID: g.ID, State: g.State, Reason: reason})
	d := grantDetails(g)
	d["break_glass"] = g.BreakGlass
	if _, err := s.audit.AppendTx(ctx, tx, audit.Entry{Actor: actor, Action: "grant.revoke", Target: g.Target,
		Outcome: broker.OutcomeSuccess, Reason: reason, Details: d}); err != nil {
		return broker.Grant{}, err
	}
	return g, nil
}

// AnnounceGrant tells the notifiers about a grant change made with one of
// the Tx methods, once its transaction committed.
func (s *Service) AnnounceGrant(ctx context.Context, g broker.Grant) { s.notifyGrant(ctx, g) }

package identity

import (
	"context"
	"fmt"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// RevokeDisabled deletes every token (api, web and db) of the users the
// directory does not enable: disabled in config, or no longer in it. Each
// deletion is a token.revoke audit record with actor "system", in the
// same transaction. It returns how many tokens it deleted. Verify refuses
// such tokens anyway; the broker calls this at start so they are gone
// from the store and the record says when and why.
func (s *Service) RevokeDisabled(ctx context.Context) (int, error) {
	var users []string
	if err := s.tokens.store.View(ctx, func(tx broker.Tx) error {
		var err error
		users, err = tx.ListTokenUsers()
		return err
	}); err != nil {
		return 0, fmt.Errorf("revoke disabled users' tokens: %w", err)
	}
	n := 0
	for _, u := range users {
		if s.dir.Enabled(u) {
			continue
		}
		deleted, err := s.RevokeUserTokens(ctx, u, "user "+auditName(u)+" is disabled or removed in config")
		if err != nil {
			return n, fmt.Errorf("revoke disabled users' tokens: %w", err)
		}
		n += deleted
	}
	return n, nil
}

// RevokeUserTokens deletes every token of user, each with a token.revoke
// record (actor "system", the reason given) in the same transaction. It
// is the one place a user's tokens are taken away: at start for users
// disabled in config, and at once when SCIM deactivates or deletes a user
// or removes them from a group.
func (s *Service) RevokeUserTokens(ctx context.Context, user, reason string) (int, error) {
	deleted := 0
	err := s.tokens.store.Update(ctx, func(tx broker.Tx) error {
		toks, err := tx.ListTokens(user)
		if err != nil {
			return err
		}
		for _, tok := range toks {
			if err := tx.DeleteToken(tok.ID); err != nil {
				return err
			}
			if _, err := s.audit.AppendTx(ctx, tx, audit.Entry{Actor: "system", Action: "token.revoke", Target: tok.Target,
				Outcome: broker.OutcomeSuccess, Reason: reason, Details: tokenDetails(tok)}); err != nil {
				return err
			}
		}
		deleted = len(toks)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("revoke %s's tokens: %w", auditName(user), err)
	}
	return deleted, nil
}

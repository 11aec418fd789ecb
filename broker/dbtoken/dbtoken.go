// Package dbtoken issues and checks database connection tokens: the
// short-lived password a user gives psql, pgbench or a driver when
// connecting through the PostgreSQL proxy. A token is scoped to one user
// and one target, lives no longer than the user's active grant on it, and
// is only accepted while that grant is active.
package dbtoken

import (
	"context"
	"fmt"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/identity"
)

// Service issues and verifies connection tokens.
type Service struct {
	tokens *identity.Tokens
	access *access.Service
	ttl    time.Duration
	now    func() time.Time
}

// New returns a Service issuing tokens valid for ttl, cut short at the
// grant's end.
func New(tokens *identity.Tokens, acc *access.Service, ttl time.Duration) *Service {
	return &Service{tokens: tokens, access: acc, ttl: ttl, now: time.Now}
}

// Issue returns a connection token for user on target. The user needs an
// active grant on target (for role, when not empty); the token expires with
// that grant at the latest. The token itself is not tied to a role: the
// client picks one when connecting (custos.role), as it may hold several.
func (s *Service) Issue(ctx context.Context, user, target, role, source string) (string, broker.Token, broker.Grant, error) {
	g, err := s.access.ActiveGrantAs(ctx, user, target, role)
	if err != nil {
		return "", broker.Token{}, broker.Grant{}, err
	}
	ttl := s.ttl
	if left := g.EffectiveEnd().Sub(s.now()); left < ttl {
		ttl = left
	}
	if ttl <= 0 {
		return "", broker.Token{}, broker.Grant{}, broker.Refuse(broker.KindForbidden, "no_active_grant", "no active grant for %s", target)
	}
	secret, tok, err := s.tokens.Issue(ctx, user, identity.KindDB, target, ttl, source)
	if err != nil {
		return "", broker.Token{}, broker.Grant{}, fmt.Errorf("db token: %w", err)
	}
	return secret, tok, g, nil
}

// AuthenticateDB implements the PostgreSQL proxy's authenticator: token
// must be a live connection token of user for target, and user must hold
// an active grant on target now. Errors are shown to the client and name
// the problem without any secret.
func (s *Service) AuthenticateDB(ctx context.Context, user, token, target, role string) (broker.Grant, error) {
	tok, err := s.tokens.Verify(ctx, token, identity.KindDB)
	if err != nil {
		return broker.Grant{}, fmt.Errorf("password authentication failed for user %q: %w", user, err)
	}
	if tok.User != user {
		return broker.Grant{}, fmt.Errorf("password authentication failed for user %q: the token belongs to another user", user)
	}
	if tok.Target != target {
		return broker.Grant{}, fmt.Errorf("password authentication failed for user %q: the token is for target %s, not %s", user, tok.Target, target)
	}
	g, err := s.access.ActiveGrantAs(ctx, user, target, role)
	if err != nil && role != "" {
		return broker.Grant{}, fmt.Errorf("no active grant for %s as role %s; run: custos request %s --role %s --for 1h --reason ...", target, role, target, role)
	}
	if err != nil {
		return broker.Grant{}, fmt.Errorf("no active grant for %s; run: custos request %s --role ROLE --for 1h --reason ...", target, target)
	}
	return g, nil
}

package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/custos-pam/custos/broker"
)

// ssoStateKey is the state-store document that holds the SSO users, so
// they survive a restart and every replica knows them.
const ssoStateKey = "identity.sso_users"

// ssoReloadEvery bounds how often an unknown user name makes the service
// re-read the SSO users (another replica may have admitted them);
// ssoRefreshEvery is how often Run re-reads them anyway, so group changes
// from sign-ins on other replicas reach this one.
const (
	ssoReloadEvery  = 2 * time.Second
	ssoRefreshEvery = 30 * time.Second
)

// ssoRecord is an SSO user as stored: the provider subject the name is
// bound to, and the groups of their last sign-in.
type ssoRecord struct {
	Name    string `json:"name"`
	Issuer  string `json:"issuer"`
	Subject string `json:"subject"`
	Email   string `json:"email,omitempty"`
	// DisplayName is the name claim, printed on signatures.
	DisplayName string   `json:"display_name,omitempty"`
	Groups      []string `json:"groups"`
	// ProviderGroups are the groups the provider listed, so a start with
	// a changed group_map or allowed_groups maps them anew.
	ProviderGroups []string `json:"provider_groups"`
	Linked         bool     `json:"linked,omitempty"`
	// MFA: the last sign-in's amr named a second factor.
	MFA       bool      `json:"mfa,omitempty"`
	LastLogin time.Time `json:"last_login"`
}

func readSSO(tx broker.Tx) (map[string]ssoRecord, error) {
	out := map[string]ssoRecord{}
	b, err := tx.GetState(ssoStateKey)
	if errors.Is(err, broker.ErrNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("decode %s: %w", ssoStateKey, err)
	}
	return out, nil
}

// LoadSSOUsers admits the SSO users in the store to the directory, with
// the provider groups of their last sign-in mapped by the current
// identity.oidc (group_map, allowed_groups). The broker calls it at start,
// before it ends the access of users it does not know, so a user who is
// skipped loses their tokens and grants: every SSO user when identity.oidc
// is gone from the config, one no longer in allowed_groups, and a name
// that is now a local user's and not linked.
func (s *Service) LoadSSOUsers(ctx context.Context) (int, error) {
	if s.sso == nil {
		return 0, nil
	}
	var recs map[string]ssoRecord
	if err := s.tokens.store.View(ctx, func(tx broker.Tx) error {
		var err error
		recs, err = readSSO(tx)
		return err
	}); err != nil {
		return 0, fmt.Errorf("load sso users: %w", err)
	}
	n := 0
	for _, r := range recs {
		groups, err := mapGroups(s.sso.cfg, r.Name, r.ProviderGroups)
		if err != nil {
			continue
		}
		linked := slices.Contains(s.sso.cfg.LinkLocalUsers, r.Name)
		if err := s.dir.admitSSO(Identity{Name: r.Name, DisplayName: r.DisplayName, Email: r.Email, Groups: groups}, linked); err == nil {
			n++
		}
	}
	s.ssoLoaded.Store(s.now().UnixNano())
	return n, nil
}

// enabled is the tokens' user check: the directory, and for a name it
// does not know, the stored SSO and SCIM users once more (at most every
// ssoReloadEvery), so a user who signed in through another replica is
// known here too.
func (s *Service) enabled(user string) bool {
	if s.dir.Enabled(user) {
		return true
	}
	last := s.ssoLoaded.Load()
	now := s.now().UnixNano()
	if now-last < int64(ssoReloadEvery) || !s.ssoLoaded.CompareAndSwap(last, now) {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.LoadSSOUsers(ctx); err != nil {
		s.log.Error("reload sso users", "err", err)
	}
	if err := s.LoadSCIM(ctx); err != nil {
		s.log.Error("reload scim users", "err", err)
	}
	return s.dir.Enabled(user)
}

// recordSSO stores u's sign-in. A name already bound to another provider
// subject is refused: a provider user who renames themselves (or is
// given) someone else's user name does not become them.
func (s *Service) recordSSO(ctx context.Context, u SSOUser, linked bool) error {
	var refused error
	err := s.tokens.store.Update(ctx, func(tx broker.Tx) error {
		recs, err := readSSO(tx)
		if err != nil {
			return err
		}
		if old, ok := recs[u.Name]; ok && (old.Issuer != u.Issuer || old.Subject != u.Subject) {
			refused = loginFailed(fmt.Sprintf("sso user name %s is bound to another provider subject", u.Name))
			return nil
		}
		recs[u.Name] = ssoRecord{Name: u.Name, Issuer: u.Issuer, Subject: u.Subject, Email: u.Email, DisplayName: u.DisplayName,
			Groups: slices.Clone(u.Groups), ProviderGroups: slices.Clone(u.ProviderGroups), Linked: linked, MFA: u.MFA, LastLogin: s.now().UTC()}
		b, err := json.Marshal(recs)
		if err != nil {
			return err
		}
		return tx.PutState(ssoStateKey, b)
	})
	if err != nil {
		return fmt.Errorf("record sso user: %w", err)
	}
	return refused
}

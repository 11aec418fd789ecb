package identity

import (
	"slices"
	"sync"
)

// ssoUsers are the users single sign-on admitted since the broker
// started, with the groups their last ID token mapped to, and the extra
// groups of local users linked to the provider. A user's entry is
// replaced at each sign-in, so group changes at the provider take effect
// at the next one. They are kept in memory: after a restart an SSO user
// signs in again before their tokens and grants count.
type ssoUsers struct {
	mu     sync.RWMutex
	users  map[string]Identity
	linked map[string][]string // local user -> mapped groups
}

func newSSOUsers() *ssoUsers {
	return &ssoUsers{users: map[string]Identity{}, linked: map[string][]string{}}
}

func (s *ssoUsers) lookup(name string) (Identity, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	id, ok := s.users[name]
	return id.clone(), ok
}

// withLinked adds a linked local user's mapped groups to groups.
func (s *ssoUsers) withLinked(name string, groups []string) []string {
	s.mu.RLock()
	extra := s.linked[name]
	s.mu.RUnlock()
	for _, g := range extra {
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	slices.Sort(groups)
	return groups
}

// members adds the SSO users (and linked local users) in group to m.
func (s *ssoUsers) members(group string, m []string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for name, id := range s.users {
		if slices.Contains(id.Groups, group) {
			m = append(m, name)
		}
	}
	for name, gs := range s.linked {
		if slices.Contains(gs, group) && !slices.Contains(m, name) {
			m = append(m, name)
		}
	}
	slices.Sort(m)
	return m
}

func (s *ssoUsers) all() []Identity {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Identity, 0, len(s.users))
	for _, id := range s.users {
		out = append(out, id.clone())
	}
	return out
}

// admitSSO records an SSO sign-in of id. A name that is a local user's
// (or a disabled local user's) is refused unless linked is set, so the
// provider can never sign in as a local break-glass or admin account;
// a linked local user keeps their configured entry and gains id's groups.
func (d *Directory) admitSSO(id Identity, linked bool) error {
	if err := d.checkSSOName(id.Name, linked); err != nil {
		return err
	}
	_, local := d.now().users[id.Name]
	id = id.clone()
	slices.Sort(id.Groups)
	d.sso.mu.Lock()
	defer d.sso.mu.Unlock()
	switch {
	case local:
		d.sso.linked[id.Name] = id.Groups
	default:
		d.sso.users[id.Name] = id
	}
	return nil
}

// checkSSOName refuses an SSO name that is a local user's (enabled or
// disabled) unless linked is set.
func (d *Directory) checkSSOName(name string, linked bool) error {
	x := d.now()
	_, local := x.users[name]
	switch {
	case x.disabled[name]:
		return loginFailed("sso user " + name + " is a disabled local user")
	case !local && !x.Enabled(name) && x.scimKnown(name):
		return loginFailed("sso user " + name + " is deactivated or deleted by SCIM provisioning")
	case local && !linked:
		return loginFailed("sso user " + name + " collides with a local user that is not linked (identity.oidc.link_local_users)")
	}
	return nil
}

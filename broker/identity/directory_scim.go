package identity

import (
	"slices"
	"sync"
)

// scimUsers are the users and group memberships a SCIM client (the
// organisation's identity provider) provisioned, as the directory sees
// them: every version of a reloaded Directory shares one set, refreshed
// from the store after each SCIM change and periodically
// (scim_store.go), so other replicas see the change too.
type scimUsers struct {
	mu sync.RWMutex
	// users maps a user name to its entry; inactive users are kept so a
	// deactivated name is refused everywhere, also for single sign-on.
	users map[string]scimEntry
	// adminGroups are the group names whose SCIM members count as
	// security admins (identity.scim.security_admin_groups). Default none.
	adminGroups []string
}

type scimEntry struct {
	id     Identity
	active bool
}

func newSCIMUsers() *scimUsers { return &scimUsers{users: map[string]scimEntry{}} }

// replace swaps the whole set (a store read).
func (s *scimUsers) replace(users map[string]scimEntry) {
	s.mu.Lock()
	s.users = users
	s.mu.Unlock()
}

// lookup returns an active SCIM user; known reports whether SCIM knows
// the name at all (active or not).
func (s *scimUsers) lookup(name string) (id Identity, active, known bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.users[name]
	return e.id.clone(), e.active, ok
}

// members adds the active SCIM users in group to m.
func (s *scimUsers) members(group string, m []string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for name, e := range s.users {
		if e.active && slices.Contains(e.id.Groups, group) && !slices.Contains(m, name) {
			m = append(m, name)
		}
	}
	slices.Sort(m)
	return m
}

// hasGroup reports whether any active SCIM user is in group.
func (s *scimUsers) hasGroup(group string) bool {
	return len(s.members(group, nil)) > 0
}

func (s *scimUsers) all() []Identity {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Identity, 0, len(s.users))
	for _, e := range s.users {
		if e.active {
			out = append(out, e.id.clone())
		}
	}
	return out
}

// SetSCIMAdminGroups sets the groups whose SCIM members are security
// admins (when security_admins lists the group too). Default none: the
// identity provider cannot make a security admin unless the config says
// it may.
func (d *Directory) SetSCIMAdminGroups(groups []string) {
	d.scim.mu.Lock()
	d.scim.adminGroups = slices.Clone(groups)
	d.scim.mu.Unlock()
}

// scimKnown reports whether SCIM provisioned name (active or not).
func (d *directory) scimKnown(name string) bool {
	_, _, known := d.scim.lookup(name)
	return known
}

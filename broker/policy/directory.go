package policy

import (
	"slices"

	"github.com/custos-pam/custos/broker/config"
)

// Directory answers group membership. broker/identity's directory
// implements it; Groups is a plain one built from config.
type Directory interface {
	// GroupsOf returns the groups user belongs to.
	GroupsOf(user string) []string
	// Members returns the members of group, and false when no group has
	// that name.
	Members(group string) ([]string, bool)
	// Enabled reports whether user exists and is not disabled. A user who
	// is not enabled may neither request nor approve, even where a policy
	// names them directly.
	Enabled(user string) bool
}

// Groups is a Directory held in memory: group name to member user names.
type Groups map[string][]string

// GroupsFromConfig builds Groups from the config's groups.
func GroupsFromConfig(gs []config.Group) Groups {
	out := make(Groups, len(gs))
	for _, g := range gs {
		out[g.Name] = append(out[g.Name], g.Members...)
	}
	return out
}

// GroupsOf implements Directory.
func (g Groups) GroupsOf(user string) []string {
	var out []string
	for name, members := range g {
		if slices.Contains(members, user) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Members implements Directory.
func (g Groups) Members(group string) ([]string, bool) {
	m, ok := g[group]
	return m, ok
}

// Enabled implements Directory. Groups knows no users, so it takes every
// name for enabled.
func (g Groups) Enabled(string) bool { return true }

// enabled reports whether user may act under dir.
func enabled(dir Directory, user string) bool {
	return user != "" && (dir == nil || dir.Enabled(user))
}

// matches reports whether user is enabled and named in list, directly or
// through one of its groups. User and group names share one namespace (config
// validation enforces it).
func matches(dir Directory, user string, list []string) bool {
	if !enabled(dir, user) {
		return false
	}
	if slices.Contains(list, user) {
		return true
	}
	if dir == nil {
		return false
	}
	for _, g := range dir.GroupsOf(user) {
		if slices.Contains(list, g) {
			return true
		}
	}
	return false
}

// IsRequester reports whether user may request the role. An empty
// requesters list lets anyone with an identity request.
func IsRequester(pol config.Policy, dir Directory, user string) bool {
	if user == "" {
		return false
	}
	return len(pol.Requesters) == 0 || matches(dir, user, pol.Requesters)
}

// IsApprover reports whether user is named in the role's approvers,
// directly or through a group. It does not know the request, so it does
// not exclude the requester: Decide does.
func IsApprover(pol config.Policy, dir Directory, user string) bool {
	return matches(dir, user, pol.Approvers)
}

// eligibleApprovers returns the distinct users who may decide a request by
// requester: every enabled user named in approvers or a member of a group
// named there, except the requester.
func eligibleApprovers(pol config.Policy, dir Directory, requester string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(u string) {
		if u != requester && !seen[u] && enabled(dir, u) {
			seen[u] = true
			out = append(out, u)
		}
	}
	for _, n := range pol.Approvers {
		if dir != nil {
			if members, ok := dir.Members(n); ok {
				for _, m := range members {
					add(m)
				}
				continue
			}
		}
		add(n)
	}
	return out
}

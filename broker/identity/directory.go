package identity

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker/config"
)

// Identity is a user as the rest of the broker sees it.
type Identity struct {
	Name string
	// DisplayName is the full name printed on electronic signatures:
	// display_name from config, or the SSO name claim. May be empty.
	DisplayName string
	Email       string
	SlackID     string
	// Groups are the names of the groups the user belongs to, sorted.
	Groups []string
	// SSHKeys authenticate the user to the SSH proxy.
	SSHKeys []ssh.PublicKey
}

// account is a directory entry with the user's credentials.
type account struct {
	id       Identity
	password passwordHash // zero when the user has no password
	hasPass  bool
	totpKey  []byte // nil when the user has no second factor
}

// Directory is the set of users and groups from config, with the users
// single sign-on admitted and SCIM provisioned merged in. Disabled users
// are left out entirely: no lookup finds them and they belong to no group,
// so they can neither sign in, request nor approve. Reload replaces the
// whole set at once (SIGHUP); each call sees one version of it.
type Directory struct {
	cur atomic.Pointer[directory]
	// sso holds users admitted by single sign-on since the broker
	// started (directory_sso.go); every version shares it, so a reload
	// keeps them.
	sso *ssoUsers
	// scim holds the users and group memberships provisioned by SCIM
	// (directory_scim.go), shared by every version like sso.
	scim *scimUsers
}

// directory is one immutable version of the Directory.
type directory struct {
	users    map[string]*account
	disabled map[string]bool
	bySlack  map[string]string
	byEmail  map[string]string // lower-cased email
	byKey    map[string]string // SHA256 key fingerprint
	groups   map[string][]string
	admins   []string
	// sso and scim are the Directory's (shared by every version).
	sso  *ssoUsers
	scim *scimUsers
	// dummy is checked when a sign-in names no user with a password, so
	// that costs as much time as a real check and user names cannot be
	// probed by timing. It has the parameters of the first configured
	// hash and random contents.
	dummy passwordHash
}

// NewDirectory builds the directory from cfg, resolving secret references,
// hashing plaintext development passwords with HashPassword and parsing
// SSH keys. Errors name the user and field, never a secret.
func NewDirectory(cfg *config.Config) (*Directory, error) {
	d := &Directory{sso: newSSOUsers(), scim: newSCIMUsers()}
	x, err := buildDirectory(cfg, d.sso, d.scim)
	if err != nil {
		return nil, err
	}
	d.cur.Store(x)
	return d, nil
}

// Reload replaces the users and groups with cfg's. On an error (a key file
// that cannot be read, a duplicate Slack ID) nothing changes.
func (d *Directory) Reload(cfg *config.Config) error {
	x, err := buildDirectory(cfg, d.sso, d.scim)
	if err != nil {
		return err
	}
	d.cur.Store(x)
	return nil
}

// now is the current version.
func (d *Directory) now() *directory { return d.cur.Load() }

func buildDirectory(cfg *config.Config, sso *ssoUsers, scim *scimUsers) (*directory, error) {
	d := &directory{
		users: map[string]*account{}, disabled: map[string]bool{}, bySlack: map[string]string{},
		byEmail: map[string]string{}, byKey: map[string]string{}, groups: map[string][]string{},
		admins: slices.Clone(cfg.SecurityAdmins), sso: sso, scim: scim,
	}
	for _, u := range cfg.Users {
		if u.Disabled {
			d.disabled[u.Name] = true
			continue
		}
		if _, dup := d.users[u.Name]; dup || u.Name == "" {
			return nil, fmt.Errorf("identity: user %q: empty or duplicate name", u.Name)
		}
		a, err := loadAccount(u)
		if err != nil {
			return nil, fmt.Errorf("identity: user %s: %w", u.Name, err)
		}
		if err := d.index(a); err != nil {
			return nil, fmt.Errorf("identity: user %s: %w", u.Name, err)
		}
		d.users[u.Name] = a
		if a.hasPass && d.dummy.key == nil {
			d.dummy = a.password.dummy()
		}
	}
	if d.dummy.key == nil {
		d.dummy = passwordHash{params: defaultPasswordParams}.dummy()
	}
	for _, g := range cfg.Groups {
		members := []string{}
		for _, m := range g.Members {
			if a, ok := d.users[m]; ok && !slices.Contains(members, m) {
				members = append(members, m)
				a.id.Groups = append(a.id.Groups, g.Name)
			}
		}
		d.groups[g.Name] = members
	}
	for _, a := range d.users {
		slices.Sort(a.id.Groups)
	}
	return d, nil
}

func loadAccount(u config.User) (*account, error) {
	a := &account{id: Identity{Name: u.Name, DisplayName: u.DisplayName, Email: u.Email, SlackID: u.SlackID}}
	switch {
	case u.PasswordHash.IsSet():
		s, err := u.PasswordHash.Resolve()
		if err != nil {
			return nil, fmt.Errorf("password_hash: %w", err)
		}
		if a.password, err = parsePasswordHash(s); err != nil {
			return nil, fmt.Errorf("password_hash: %w", err)
		}
		a.hasPass = true
	case u.Password.IsSet():
		pw, err := u.Password.Resolve()
		if err != nil {
			return nil, fmt.Errorf("password: %w", err)
		}
		s, err := HashPassword(pw)
		if err != nil {
			return nil, fmt.Errorf("password: %w", err)
		}
		a.password, _ = parsePasswordHash(s)
		a.hasPass = true
	}
	if u.TOTPSecret.IsSet() {
		s, err := u.TOTPSecret.Resolve()
		if err != nil {
			return nil, fmt.Errorf("totp_secret: %w", err)
		}
		if a.totpKey, err = ParseTOTPSecret(s); err != nil {
			return nil, fmt.Errorf("totp_secret: %w", err)
		}
	}
	lines, err := config.ResolveLines(u.SSHKeys)
	if err != nil {
		return nil, fmt.Errorf("ssh_keys: %w", err)
	}
	for i, line := range lines {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return nil, fmt.Errorf("ssh_keys[%d]: %w", i, err)
		}
		a.id.SSHKeys = append(a.id.SSHKeys, k)
	}
	return a, nil
}

// index adds a's Slack ID, email and keys to the lookup maps, refusing
// values another user already has: a lookup must name one user.
func (d *directory) index(a *account) error {
	if id := a.id.SlackID; id != "" {
		if other, ok := d.bySlack[id]; ok {
			return fmt.Errorf("slack_id %s is also %s's", id, other)
		}
		d.bySlack[id] = a.id.Name
	}
	if e := strings.ToLower(strings.TrimSpace(a.id.Email)); e != "" {
		if other, ok := d.byEmail[e]; ok {
			return fmt.Errorf("email %s is also %s's", a.id.Email, other)
		}
		d.byEmail[e] = a.id.Name
	}
	for _, k := range a.id.SSHKeys {
		fp := ssh.FingerprintSHA256(k)
		if other, ok := d.byKey[fp]; ok && other != a.id.Name {
			return fmt.Errorf("ssh key %s is also %s's", fp, other)
		}
		d.byKey[fp] = a.id.Name
	}
	return nil
}

// Lookup is Directory.Lookup on one version.
func (d *directory) Lookup(name string) (Identity, bool) {
	a, ok := d.users[name]
	if !ok {
		return d.lookupRemote(name)
	}
	id := a.id.clone()
	id.Groups = d.sso.withLinked(name, id.Groups)
	return id, true
}

// BySlackID is Directory.BySlackID on one version.
func (d *directory) BySlackID(id string) (Identity, bool) {
	if id == "" {
		return Identity{}, false
	}
	return d.Lookup(d.bySlack[id])
}

// ByEmail is Directory.ByEmail on one version.
func (d *directory) ByEmail(email string) (Identity, bool) {
	e := strings.ToLower(strings.TrimSpace(email))
	if e == "" {
		return Identity{}, false
	}
	return d.Lookup(d.byEmail[e])
}

// ByKeyFingerprint is Directory.ByKeyFingerprint on one version.
func (d *directory) ByKeyFingerprint(fp string) (Identity, bool) {
	if fp == "" {
		return Identity{}, false
	}
	return d.Lookup(d.byKey[fp])
}

// ByPublicKey is Directory.ByPublicKey on one version.
func (d *directory) ByPublicKey(key ssh.PublicKey) (Identity, bool) {
	if key == nil {
		return Identity{}, false
	}
	return d.ByKeyFingerprint(ssh.FingerprintSHA256(key))
}

// lookupRemote finds a user who is not in config: a SCIM user (not
// found when deactivated, whatever single sign-on says; with the groups
// of their last SSO sign-in added when they have one), else an SSO user.
func (d *directory) lookupRemote(name string) (Identity, bool) {
	sc, active, known := d.scim.lookup(name)
	if !known {
		return d.sso.lookup(name)
	}
	if !active {
		return Identity{}, false
	}
	if s, ok := d.sso.lookup(name); ok {
		for _, g := range s.Groups {
			if !slices.Contains(sc.Groups, g) {
				sc.Groups = append(sc.Groups, g)
			}
		}
		if sc.Email == "" {
			sc.Email = s.Email
		}
	}
	slices.Sort(sc.Groups)
	return sc, true
}

// Enabled is Directory.Enabled on one version: a configured user who is
// not disabled, an active SCIM user, or a user admitted by single sign-on
// whom SCIM has not deactivated.
func (d *directory) Enabled(user string) bool {
	if _, ok := d.users[user]; ok {
		return true
	}
	_, ok := d.lookupRemote(user)
	return ok
}

// PrintedName is the name printed on user's signatures: their display
// name, or the login name when they have none.
func (d *Directory) PrintedName(user string) string {
	if id, ok := d.Lookup(user); ok && strings.TrimSpace(id.DisplayName) != "" {
		return strings.TrimSpace(id.DisplayName)
	}
	return user
}

// hasTOTP reports whether a local user has a TOTP second factor.
func (d *directory) hasTOTP(user string) bool {
	a, ok := d.users[user]
	return ok && a.totpKey != nil
}

// GroupsOf is Directory.GroupsOf on one version.
func (d *directory) GroupsOf(user string) []string {
	id, ok := d.Lookup(user)
	if !ok {
		return nil
	}
	return id.Groups
}

// Members is Directory.Members on one version.
func (d *directory) Members(group string) ([]string, bool) {
	m, ok := d.groups[group]
	if !ok && !d.scim.hasGroup(group) {
		return nil, false
	}
	m = d.scim.members(group, d.sso.members(group, slices.Clone(m)))
	// An SSO user whom SCIM deactivated is no member.
	return slices.DeleteFunc(m, func(u string) bool { return !d.Enabled(u) }), true
}

// InGroup is Directory.InGroup on one version.
func (d *directory) InGroup(user, group string) bool {
	return slices.Contains(d.GroupsOf(user), group)
}

// IsSecurityAdmin is Directory.IsSecurityAdmin on one version.
// SCIM group memberships count only for the groups
// identity.scim.security_admin_groups names.
func (d *directory) IsSecurityAdmin(user string) bool {
	for _, g := range d.AdminGroupsOf(user) {
		if slices.Contains(d.admins, g) {
			return true
		}
	}
	return false
}

// AdminGroupsOf is Directory.AdminGroupsOf on one version.
func (d *directory) AdminGroupsOf(user string) []string {
	if !d.Enabled(user) {
		return nil
	}
	var groups []string
	if a, ok := d.users[user]; ok {
		groups = d.sso.withLinked(user, slices.Clone(a.id.Groups))
	} else if s, ok := d.sso.lookup(user); ok {
		groups = s.Groups
	}
	if sc, _, _ := d.scim.lookup(user); len(sc.Groups) > 0 {
		d.scim.mu.RLock()
		for _, g := range sc.Groups {
			if slices.Contains(d.scim.adminGroups, g) && !slices.Contains(groups, g) {
				groups = append(groups, g)
			}
		}
		d.scim.mu.RUnlock()
	}
	slices.Sort(groups)
	return groups
}

// Users is Directory.Users on one version.
func (d *directory) Users() []Identity {
	out := make([]Identity, 0, len(d.users))
	seen := map[string]bool{}
	add := func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		if id, ok := d.Lookup(name); ok {
			out = append(out, id)
		}
	}
	for name := range d.users {
		add(name)
	}
	for _, id := range d.sso.all() {
		add(id.Name)
	}
	for _, id := range d.scim.all() {
		add(id.Name)
	}
	slices.SortFunc(out, func(a, b Identity) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (id Identity) clone() Identity {
	id.Groups = slices.Clone(id.Groups)
	id.SSHKeys = slices.Clone(id.SSHKeys)
	return id
}

// Lookup returns the user with that name.
func (d *Directory) Lookup(name string) (Identity, bool) { return d.now().Lookup(name) }

// BySlackID returns the user mapped to a Slack user ID.
func (d *Directory) BySlackID(id string) (Identity, bool) { return d.now().BySlackID(id) }

// ByEmail returns the user with that email address, compared
// case-insensitively.
func (d *Directory) ByEmail(email string) (Identity, bool) { return d.now().ByEmail(email) }

// ByKeyFingerprint returns the user owning the SSH public key with that
// SHA256 fingerprint ("SHA256:…", as ssh.FingerprintSHA256 prints it).
func (d *Directory) ByKeyFingerprint(fp string) (Identity, bool) { return d.now().ByKeyFingerprint(fp) }

// ByPublicKey returns the user owning key.
func (d *Directory) ByPublicKey(key ssh.PublicKey) (Identity, bool) { return d.now().ByPublicKey(key) }

// Enabled reports whether user is configured and not disabled. It
// implements policy.Directory; every token check and grant lookup asks it.
func (d *Directory) Enabled(user string) bool { return d.now().Enabled(user) }

// GroupsOf returns the groups user belongs to, sorted. It implements
// policy.Directory.
func (d *Directory) GroupsOf(user string) []string { return d.now().GroupsOf(user) }

// Members returns the enabled members of group, and false when no group
// has that name. It implements policy.Directory.
func (d *Directory) Members(group string) ([]string, bool) { return d.now().Members(group) }

// InGroup reports whether user is a member of group.
func (d *Directory) InGroup(user, group string) bool { return d.now().InGroup(user, group) }

// IsSecurityAdmin reports whether user belongs to a group listed in
// security_admins.
func (d *Directory) IsSecurityAdmin(user string) bool { return d.now().IsSecurityAdmin(user) }

// AdminGroupsOf returns the groups of user that count for security-admin
// decisions: all of GroupsOf except SCIM memberships of groups that
// identity.scim.security_admin_groups does not name, so the identity
// provider cannot make a security admin unless the config lets it.
// broker/access asks it for security_admins.
func (d *Directory) AdminGroupsOf(user string) []string { return d.now().AdminGroupsOf(user) }

// Users returns every enabled user, sorted by name.
func (d *Directory) Users() []Identity { return d.now().Users() }

// totpKeyOf returns a local user's TOTP secret, or nil.
func (d *Directory) totpKeyOf(user string) []byte {
	if a, ok := d.now().users[user]; ok {
		return a.totpKey
	}
	return nil
}

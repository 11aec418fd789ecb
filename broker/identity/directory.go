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
	Name    string
	Email   string
	SlackID string
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

// Directory is the set of users and groups from config. Disabled users
// are left out entirely: no lookup finds them and they belong to no group,
// so they can neither sign in, request nor approve. Reload replaces the
// whole set at once (SIGHUP); each call sees one version of it.
type Directory struct {
	cur atomic.Pointer[directory]
	// sso holds users admitted by single sign-on since the broker
	// started (directory_sso.go); every version shares it, so a reload
	// keeps them.
	sso *ssoUsers
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
	// sso is the Directory's (shared by every version).
	sso *ssoUsers
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
	d := &Directory{sso: newSSOUsers()}
	x, err := buildDirectory(cfg, d.sso)
	if err != nil {
		return nil, err
	}
	d.cur.Store(x)
	return d, nil
}

// Reload replaces the users and groups with cfg's. On an error (a key file
// that cannot be read, a duplicate Slack ID) nothing changes.
func (d *Directory) Reload(cfg *config.Config) error {
	x, err := buildDirectory(cfg, d.sso)
	if err != nil {
		return err
	}
	d.cur.Store(x)
	return nil
}

// now is the current version.
func (d *Directory) now() *directory { return d.cur.Load() }

func buildDirectory(cfg *config.Config, sso *ssoUsers) (*directory, error) {
	d := &directory{
		users: map[string]*account{}, disabled: map[string]bool{}, bySlack: map[string]string{},
		byEmail: map[string]string{}, byKey: map[string]string{}, groups: map[string][]string{},
		admins: slices.Clone(cfg.SecurityAdmins), sso: sso,
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
	a := &account{id: Identity{Name: u.Name, Email: u.Email, SlackID: u.SlackID}}
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
		return d.sso.lookup(name)
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

// Enabled is Directory.Enabled on one version: a configured user who is
// not disabled, or a user admitted by single sign-on.
func (d *directory) Enabled(user string) bool {
	if _, ok := d.users[user]; ok {
		return true
	}
	_, ok := d.sso.lookup(user)
	return ok
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
	if !ok {
		return nil, false
	}
	return d.sso.members(group, slices.Clone(m)), true
}

// InGroup is Directory.InGroup on one version.
func (d *directory) InGroup(user, group string) bool {
	return slices.Contains(d.GroupsOf(user), group)
}

// IsSecurityAdmin is Directory.IsSecurityAdmin on one version.
func (d *directory) IsSecurityAdmin(user string) bool {
	for _, g := range d.admins {
		if d.InGroup(user, g) {
			return true
		}
	}
	return false
}

// Users is Directory.Users on one version.
func (d *directory) Users() []Identity {
	out := make([]Identity, 0, len(d.users))
	for name := range d.users {
		id, _ := d.Lookup(name)
		out = append(out, id)
	}
	out = append(out, d.sso.all()...)
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

// Users returns every enabled user, sorted by name.
func (d *Directory) Users() []Identity { return d.now().Users() }

// totpKeyOf returns a local user's TOTP secret, or nil.
func (d *Directory) totpKeyOf(user string) []byte {
	if a, ok := d.now().users[user]; ok {
		return a.totpKey
	}
	return nil
}

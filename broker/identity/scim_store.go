package identity

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// scimStateKey is the state-store document holding the users and groups
// SCIM provisioned. One JSON document is fine for thousands of users:
// each change rewrites it in one serialized transaction.
const scimStateKey = "identity.scim"

// scimRefreshEvery is how often Run re-reads the SCIM users, so a change
// made through another replica reaches this one's directory. Access ends
// at once everywhere regardless: tokens and grants are in the store.
const scimRefreshEvery = 5 * time.Second

// SCIMUser is a user as SCIM provisioned it. Deleted users stay as
// tombstones so their name stays refused (also for single sign-on) until
// the provider creates the name again.
type SCIMUser struct {
	ID          string    `json:"id"`
	UserName    string    `json:"userName"`
	ExternalID  string    `json:"externalId,omitempty"`
	DisplayName string    `json:"displayName,omitempty"`
	Email       string    `json:"email,omitempty"`
	Active      bool      `json:"active"`
	Deleted     bool      `json:"deleted,omitempty"`
	Created     time.Time `json:"created"`
	Modified    time.Time `json:"modified"`
}

// SCIMGroup is a group as SCIM provisioned it. Its DisplayName is the
// policy group name; Members are SCIM user IDs.
type SCIMGroup struct {
	ID          string    `json:"id"`
	DisplayName string    `json:"displayName"`
	ExternalID  string    `json:"externalId,omitempty"`
	Members     []string  `json:"members"`
	Created     time.Time `json:"created"`
	Modified    time.Time `json:"modified"`
}

// SCIMState is every SCIM user and group, keyed by ID.
type SCIMState struct {
	Users  map[string]*SCIMUser  `json:"users"`
	Groups map[string]*SCIMGroup `json:"groups"`
	// Version counts the changes, so a replica never installs an older
	// state over a newer one (two updates finishing out of order).
	Version int64 `json:"version"`
}

// UserByName returns the live (not deleted) user named name.
func (st *SCIMState) UserByName(name string) *SCIMUser {
	for _, u := range st.Users {
		if u.UserName == name && !u.Deleted {
			return u
		}
	}
	return nil
}

// GroupsOf returns the display names of the groups user ID is in, sorted.
func (st *SCIMState) GroupsOf(id string) []string {
	var out []string
	for _, g := range st.Groups {
		if slices.Contains(g.Members, id) {
			out = append(out, g.DisplayName)
		}
	}
	slices.Sort(out)
	return out
}

// NewSCIMID returns a random resource ID.
func NewSCIMID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (st *SCIMState) clone() *SCIMState {
	out := &SCIMState{Users: map[string]*SCIMUser{}, Groups: map[string]*SCIMGroup{}, Version: st.Version}
	for id, u := range st.Users {
		c := *u
		out.Users[id] = &c
	}
	for id, g := range st.Groups {
		c := *g
		c.Members = slices.Clone(g.Members)
		out.Groups[id] = &c
	}
	return out
}

func readSCIM(tx broker.Tx) (*SCIMState, error) {
	st := &SCIMState{Users: map[string]*SCIMUser{}, Groups: map[string]*SCIMGroup{}}
	b, err := tx.GetState(scimStateKey)
	if errors.Is(err, broker.ErrNotFound) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("decode %s: %w", scimStateKey, err)
	}
	if st.Users == nil {
		st.Users = map[string]*SCIMUser{}
	}
	if st.Groups == nil {
		st.Groups = map[string]*SCIMGroup{}
	}
	return st, nil
}

// SCIMView returns the stored SCIM users and groups.
func (s *Service) SCIMView(ctx context.Context) (*SCIMState, error) {
	var st *SCIMState
	err := s.store.View(ctx, func(tx broker.Tx) error {
		var err error
		st, err = readSCIM(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("scim: read: %w", err)
	}
	return st, nil
}

// LoadSCIM reads the SCIM users into the directory. The broker calls it
// at start, before the sweep of users it does not know, and Run calls it
// every few seconds.
func (s *Service) LoadSCIM(ctx context.Context) error {
	st, err := s.SCIMView(ctx)
	if err != nil {
		return err
	}
	s.applySCIM(st)
	return nil
}

func (s *Service) applySCIM(st *SCIMState) {
	s.scimMu.Lock()
	defer s.scimMu.Unlock()
	if st.Version < s.scimVersion {
		return
	}
	s.scimVersion = st.Version
	users := map[string]scimEntry{}
	for id, u := range st.Users {
		e := scimEntry{id: Identity{Name: u.UserName, Email: u.Email}, active: u.Active && !u.Deleted}
		if e.active {
			e.id.Groups = st.GroupsOf(id)
		}
		if old, ok := users[u.UserName]; ok && old.active {
			continue // a live user wins over a tombstone of the same name
		}
		users[u.UserName] = e
	}
	s.dir.scim.replace(users)
}

// AccessLoss ends the access of a user SCIM deactivated, deleted or
// removed from a group: the broker passes one that revokes their tokens
// and grants and cancels their pending requests (cmd/custos/app).
type AccessLoss func(ctx context.Context, user, reason string) error

// SetAccessLoss sets what SCIMUpdate calls for each user who loses
// access. Without one, only their tokens are revoked.
func (s *Service) SetAccessLoss(f AccessLoss) { s.accessLoss = f }

// SCIMUpdate changes the SCIM users and groups with fn in one store
// transaction, with a scim.* audit record (actor "scim") for each change.
// Names are checked: a user name is unique among live SCIM users and
// may not be a config user's (enabled or disabled); a group name is
// unique. fn's *Error is returned as is. After the change the directory
// sees it at once, and every user who lost access (deactivated, deleted,
// removed from a group) has it ended through the AccessLoss before
// SCIMUpdate returns.
func (s *Service) SCIMUpdate(ctx context.Context, fn func(st *SCIMState) error) error {
	var old, cur *SCIMState
	err := s.store.Update(ctx, func(tx broker.Tx) error {
		var err error
		if old, err = readSCIM(tx); err != nil {
			return err
		}
		cur = old.clone()
		if err := fn(cur); err != nil {
			return err
		}
		cur.Version = old.Version + 1
		if err := s.checkSCIM(old, cur); err != nil {
			return err
		}
		for _, e := range scimChanges(old, cur) {
			if d, ok := e.Details.(map[string]any); ok && audit.Source(ctx) != "" {
				d["source"] = audit.Source(ctx)
			}
			if _, err := s.audit.AppendTx(ctx, tx, e); err != nil {
				return err
			}
		}
		b, err := json.Marshal(cur)
		if err != nil {
			return err
		}
		return tx.PutState(scimStateKey, b)
	})
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if err != nil {
		return fmt.Errorf("scim: update: %w", err)
	}
	s.applySCIM(cur)
	for _, l := range scimLosses(old, cur) {
		if err := s.endAccess(ctx, l.user, l.reason); err != nil {
			return fmt.Errorf("scim: end access of %s: %w", l.user, err)
		}
	}
	return nil
}

func (s *Service) endAccess(ctx context.Context, user, reason string) error {
	ctx = context.WithoutCancel(ctx)
	if x := s.dir.now(); x.users[user] != nil || x.disabled[user] {
		// The config took this name after SCIM created it: what the name
		// holds is the config user's, which SCIM does not manage.
		s.log.Warn("scim change for a name the config has; the config user keeps their access", "user", user)
		return nil
	}
	if s.accessLoss != nil {
		return s.accessLoss(ctx, user, reason)
	}
	_, err := s.RevokeUserTokens(ctx, user, reason)
	return err
}

// checkSCIM refuses duplicate names, and names of config users for users
// created or renamed now: a user the config took the name of later stays
// (shadowed by the config user) rather than blocking every change.
func (s *Service) checkSCIM(old, st *SCIMState) error {
	x := s.dir.now()
	names := map[string]bool{}
	for id, u := range st.Users {
		if u.Deleted {
			continue
		}
		if names[u.UserName] {
			return scimConflict("userName " + u.UserName + " is taken")
		}
		names[u.UserName] = true
		if o, ok := old.Users[id]; ok && !o.Deleted && o.UserName == u.UserName {
			continue
		}
		if err := validSCIMName(u.UserName); err != nil {
			return err
		}
		if _, local := x.users[u.UserName]; local || x.disabled[u.UserName] {
			return scimConflict("userName " + u.UserName + " is a user in the broker's config")
		}
	}
	groups := map[string]bool{}
	for _, g := range st.Groups {
		if g.DisplayName == "" {
			return scimInvalid("group displayName is required")
		}
		if groups[g.DisplayName] {
			return scimConflict("group displayName " + g.DisplayName + " is taken")
		}
		groups[g.DisplayName] = true
		for _, m := range g.Members {
			if u, ok := st.Users[m]; !ok || u.Deleted {
				return scimInvalid("group " + g.DisplayName + ": no user with id " + m)
			}
		}
	}
	return nil
}

// validSCIMName applies the rules of SSO user names.
func validSCIMName(n string) error {
	if n == "" || len(n) > maxAuditedName || strings.ContainsAny(n, " /\\:") || strings.ContainsFunc(n, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return scimInvalid("userName must be 1-128 characters without spaces, control characters, /, \\ or :")
	}
	return nil
}

func scimConflict(msg string) *Error {
	return &Error{Kind: broker.KindConflict, Code: "uniqueness", Message: msg, Detail: msg}
}

func scimInvalid(msg string) *Error {
	return &Error{Kind: broker.KindInvalid, Code: "invalidValue", Message: msg, Detail: msg}
}

type scimLoss struct{ user, reason string }

// scimLosses lists the users who had access before and lost some.
func scimLosses(old, cur *SCIMState) []scimLoss {
	var out []scimLoss
	for id, o := range old.Users {
		if !o.Active || o.Deleted {
			continue
		}
		n, ok := cur.Users[id]
		switch {
		case !ok || n.Deleted:
			out = append(out, scimLoss{o.UserName, "user " + o.UserName + " was deleted by SCIM provisioning"})
		case !n.Active:
			out = append(out, scimLoss{o.UserName, "user " + o.UserName + " was deactivated by SCIM provisioning"})
		case n.UserName != o.UserName:
			// What the old name holds is no one's any more.
			out = append(out, scimLoss{o.UserName, "user " + o.UserName + " was renamed to " + n.UserName + " by SCIM provisioning"})
		default:
			now := cur.GroupsOf(id)
			for _, g := range old.GroupsOf(id) {
				if !slices.Contains(now, g) {
					out = append(out, scimLoss{o.UserName, "user " + o.UserName + " was removed from group " + g + " by SCIM provisioning"})
					break
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b scimLoss) int { return strings.Compare(a.user, b.user) })
	return out
}

// scimChanges are the audit records of the change from old to cur.
func scimChanges(old, cur *SCIMState) []audit.Entry {
	var out []audit.Entry
	rec := func(action, target string, d map[string]any) {
		out = append(out, audit.Entry{Actor: "scim", Action: action, Target: target, Outcome: broker.OutcomeSuccess, Details: d})
	}
	for id, n := range cur.Users {
		d := map[string]any{"id": id, "user": n.UserName, "active": n.Active}
		o, ok := old.Users[id]
		switch {
		case !ok && !n.Deleted:
			rec("scim.user.create", n.UserName, d)
		case !ok:
		case n.Deleted && !o.Deleted:
			rec("scim.user.delete", n.UserName, d)
		case o.Active && !n.Active:
			rec("scim.user.deactivate", n.UserName, d)
		case !o.Active && n.Active:
			rec("scim.user.activate", n.UserName, d)
		case *o != *n:
			rec("scim.user.update", n.UserName, d)
		}
	}
	for id, o := range old.Users {
		if _, ok := cur.Users[id]; !ok && !o.Deleted {
			rec("scim.user.delete", o.UserName, map[string]any{"id": id, "user": o.UserName})
		}
	}
	names := func(st *SCIMState, ids []string) []string {
		out := []string{}
		for _, id := range ids {
			if u, ok := st.Users[id]; ok {
				out = append(out, u.UserName)
			}
		}
		slices.Sort(out)
		return out
	}
	for id, n := range cur.Groups {
		o, ok := old.Groups[id]
		if !ok {
			rec("scim.group.create", n.DisplayName, map[string]any{"id": id, "members": names(cur, n.Members)})
			continue
		}
		var added, removed []string
		for _, m := range n.Members {
			if !slices.Contains(o.Members, m) {
				added = append(added, m)
			}
		}
		for _, m := range o.Members {
			if !slices.Contains(n.Members, m) {
				removed = append(removed, m)
			}
		}
		if len(added)+len(removed) > 0 || o.DisplayName != n.DisplayName || o.ExternalID != n.ExternalID {
			rec("scim.group.update", n.DisplayName, map[string]any{"id": id, "added": names(cur, added), "removed": names(old, removed), "previous_name": o.DisplayName})
		}
	}
	for id, o := range old.Groups {
		if _, ok := cur.Groups[id]; !ok {
			rec("scim.group.delete", o.DisplayName, map[string]any{"id": id, "members": names(old, o.Members)})
		}
	}
	slices.SortStableFunc(out, func(a, b audit.Entry) int { return strings.Compare(a.Action+a.Target, b.Action+b.Target) })
	return out
}

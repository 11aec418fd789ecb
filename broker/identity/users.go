package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
)

// Where a user comes from (UserFactors.Sources).
const (
	SourceConfig = "config"
	SourceSSO    = "sso"
	SourceSCIM   = "scim"
)

// Factors a user can authenticate with (UserFactors.Factors).
const (
	FactorPassword = "password"
	FactorTOTP     = "totp"
	// FactorSSO: the user signed in through the OpenID Provider; whether
	// the provider asked for a second factor is FactorSSOMFA.
	FactorSSO    = "sso"
	FactorSSOMFA = "sso+mfa"
	// FactorPasskey: a registered passkey or security key, when passkeys
	// are configured (PasskeyHolders).
	FactorPasskey = "passkey"
)

// UserFactors is one user as `custos users`, GET /api/v1/users and the
// risk indicators see them.
type UserFactors struct {
	Name string `json:"name"`
	// Sources: config, sso (signed in through the provider at least
	// once) and scim (provisioned); a linked or provisioned SSO user has
	// several.
	Sources []string `json:"sources"`
	// Groups are the policy groups the directory gives them now (none
	// when disabled).
	Groups []string `json:"groups"`
	// Enabled is what every check asks (Directory.Enabled).
	Enabled bool `json:"enabled"`
	// Factors: password and totp for config users; sso or sso+mfa from
	// the last SSO sign-in (sso+mfa when the provider's amr named a
	// second factor); passkey when one is registered.
	Factors []string `json:"factors"`
	// SecondFactor: totp, sso+mfa or passkey.
	SecondFactor bool `json:"second_factor"`
	// LastActivity is the last sign-in or token use, recorded at most
	// once a minute per user and replica; nil when never seen.
	LastActivity *time.Time `json:"last_activity,omitempty"`
}

// PasskeyHolders reports which users have a passkey registered.
type PasskeyHolders interface {
	HasPasskey(ctx context.Context, user string) (bool, error)
}

// SetPasskeys makes Factors list passkeys. Default: none.
func (s *Service) SetPasskeys(p PasskeyHolders) { s.passkeys = p }

// Factors lists every user the broker knows — config users (also
// disabled ones), SSO users and SCIM users (also deactivated ones, not
// deleted ones) — with where they come from, their groups, factors and
// last activity, sorted by name. Risk indicators count users without a
// second factor from it.
func (s *Service) Factors(ctx context.Context) ([]UserFactors, error) {
	var (
		sso  map[string]ssoRecord
		sc   *SCIMState
		seen map[string]time.Time
	)
	err := s.store.View(ctx, func(tx broker.Tx) error {
		var err error
		if sso, err = readSSO(tx); err != nil {
			return err
		}
		if sc, err = readSCIM(tx); err != nil {
			return err
		}
		seen, err = readLastSeen(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("identity: factors: %w", err)
	}
	x := s.dir.now()
	byName := map[string]*UserFactors{}
	get := func(name, source string) *UserFactors {
		u, ok := byName[name]
		if !ok {
			u = &UserFactors{Name: name, Groups: []string{}, Factors: []string{}}
			byName[name] = u
		}
		if !slices.Contains(u.Sources, source) {
			u.Sources = append(u.Sources, source)
		}
		return u
	}
	addFactor := func(u *UserFactors, f string) {
		if !slices.Contains(u.Factors, f) {
			u.Factors = append(u.Factors, f)
		}
	}
	for name, a := range x.users {
		u := get(name, SourceConfig)
		if a.hasPass {
			addFactor(u, FactorPassword)
		}
		if a.totpKey != nil {
			addFactor(u, FactorTOTP)
		}
	}
	for name := range x.disabled {
		get(name, SourceConfig)
	}
	for name, r := range sso {
		u := get(name, SourceSSO)
		if r.MFA {
			addFactor(u, FactorSSOMFA)
		} else {
			addFactor(u, FactorSSO)
		}
	}
	for _, r := range sc.Users {
		if !r.Deleted {
			get(r.UserName, SourceSCIM)
		}
	}
	out := make([]UserFactors, 0, len(byName))
	for name, u := range byName {
		if !slices.Contains(u.Factors, FactorTOTP) {
			// A secret enrolled in the web UI, kept in the store.
			if has, err := (StoreTOTP{Store: s.store}).Enrolled(ctx, name); err != nil {
				return nil, fmt.Errorf("identity: factors: %w", err)
			} else if has {
				addFactor(u, FactorTOTP)
			}
		}
		if s.passkeys != nil {
			has, err := s.passkeys.HasPasskey(ctx, name)
			if err != nil {
				return nil, fmt.Errorf("identity: factors: %w", err)
			}
			if has {
				addFactor(u, FactorPasskey)
			}
		}
		u.Enabled = s.dir.Enabled(name)
		if u.Enabled {
			u.Groups = append(u.Groups, s.dir.GroupsOf(name)...)
		}
		slices.Sort(u.Factors)
		u.SecondFactor = slices.ContainsFunc(u.Factors, func(f string) bool {
			return f == FactorTOTP || f == FactorSSOMFA || f == FactorPasskey
		})
		if t, ok := seen[name]; ok {
			u.LastActivity = &t
		}
		out = append(out, *u)
	}
	slices.SortFunc(out, func(a, b UserFactors) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// lastSeenKey is the state-store document of each user's last sign-in
// or token use.
const lastSeenKey = "identity.last_seen"

// lastSeenEvery bounds the writes: a user's time is written at most once
// per this interval and replica.
const lastSeenEvery = time.Minute

func readLastSeen(tx broker.Tx) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	b, err := tx.GetState(lastSeenKey)
	if errors.Is(err, broker.ErrNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("decode %s: %w", lastSeenKey, err)
	}
	return out, nil
}

// touch records that user was active now, unless this replica recorded
// them less than lastSeenEvery ago. A failure is logged: activity
// tracking never refuses a request.
func (s *Service) touch(ctx context.Context, user string) {
	now := s.now().UTC()
	s.seenMu.Lock()
	if last, ok := s.seen[user]; ok && now.Sub(last) < lastSeenEvery {
		s.seenMu.Unlock()
		return
	}
	s.seen[user] = now
	s.seenMu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	err := s.store.Update(ctx, func(tx broker.Tx) error {
		m, err := readLastSeen(tx)
		if err != nil {
			return err
		}
		if m[user].After(now) {
			return nil
		}
		m[user] = now
		b, err := json.Marshal(m)
		if err != nil {
			return err
		}
		return tx.PutState(lastSeenKey, b)
	})
	if err != nil {
		s.log.Error("record last activity", "user", auditName(user), "err", err)
	}
}

package kri

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/identity"
)

// The indicators of users and their credentials. The second-factor
// indicators count every enabled user the broker knows (config, single
// sign-on and SCIM, Options.Factors): a second factor is TOTP (from the
// config or enrolled in the web UI), a passkey, or a single sign-on whose
// token said the provider asked for one. Without Options.Factors they
// count the config's users and their TOTP secrets. Stale and dormant
// count every enabled user the directory knows.

// factorLister lists every user with their factors.
type factorLister interface {
	Factors(ctx context.Context) ([]identity.UserFactors, error)
}

// enabledUsers is how many users the second-factor ratio is over.
func enabledUsers(in *input) int {
	if in.factors == nil {
		n := 0
		for _, u := range in.cfg.Users {
			if !u.Disabled {
				n++
			}
		}
		return n
	}
	n := 0
	for _, u := range in.factors {
		if u.Enabled {
			n++
		}
	}
	return n
}

// withoutMFA are the enabled users who sign in without a second factor.
func withoutMFA(in *input) []Record {
	var recs []Record
	if in.factors != nil {
		for _, u := range in.factors {
			if u.Enabled && !u.SecondFactor {
				recs = append(recs, userRecord(u.Name, "no second factor ("+strings.Join(u.Sources, ", ")+"; "+strings.Join(u.Factors, ", ")+")"))
			}
		}
		return recs
	}
	for _, u := range in.cfg.Users {
		if !u.Disabled && !u.TOTPSecret.IsSet() {
			recs = append(recs, userRecord(u.Name, "no TOTP second factor"))
		}
	}
	return recs
}

func usersWithoutMFA(in *input) (*float64, []Row, []Record) {
	recs := withoutMFA(in)
	return num(float64(len(recs))), nil, recs
}

func usersWithoutMFARatio(in *input) (*float64, []Row, []Record) {
	n := enabledUsers(in)
	if n == 0 {
		return nil, nil, nil
	}
	recs := withoutMFA(in)
	return num(float64(len(recs)) / float64(n)), nil, recs
}

// staleUsers are enabled users who made no request within stale_after.
func staleUsers(in *input) (*float64, []Row, []Record) {
	from := in.now.Add(-in.cfg.Indicators.StaleAfterOrDefault())
	last := map[string]time.Time{}
	for _, r := range in.requests {
		if r.CreatedAt.After(last[r.User]) {
			last[r.User] = r.CreatedAt
		}
	}
	var recs []Record
	for _, u := range in.people {
		if last[u].Before(from) {
			recs = append(recs, userRecord(u, "no request since "+from.Format(time.DateOnly)))
		}
	}
	return num(float64(len(recs))), nil, recs
}

// dormantAccounts are enabled users with no activity within
// dormant_after: no successful audited action of theirs (sign-in, token
// issue, request, approval, …) and no session started.
func dormantAccounts(in *input) (*float64, []Row, []Record) {
	from := in.now.Add(-in.cfg.Indicators.DormantAfterOrDefault())
	last := map[string]time.Time{}
	seen := func(u string, t time.Time) {
		if t.After(last[u]) {
			last[u] = t
		}
	}
	for _, a := range in.audit {
		if a.Outcome == broker.OutcomeSuccess {
			seen(a.Actor, a.Time)
		}
	}
	for _, s := range in.sessions {
		seen(s.User, s.StartedAt)
	}
	var recs []Record
	for _, u := range in.people {
		if last[u].Before(from) {
			recs = append(recs, userRecord(u, "no sign-in or activity since "+from.Format(time.DateOnly)))
		}
	}
	return num(float64(len(recs))), nil, recs
}

// tokensOverRotation are unexpired API tokens older than token_rotation.
func tokensOverRotation(in *input) (*float64, []Row, []Record) {
	rot := in.cfg.Indicators.TokenRotationOrDefault()
	var recs []Record
	for _, t := range in.tokens {
		if t.Kind != "api" || !t.ExpiresAt.After(in.now) {
			continue
		}
		if age := in.now.Sub(t.CreatedAt); age > rot {
			recs = append(recs, Record{Kind: KindToken, ID: t.ID, User: t.User, At: t.CreatedAt,
				Detail: fmt.Sprintf("%d days old", int(age.Hours()/24)), Link: actorLink(t.User)})
		}
	}
	return num(float64(len(recs))), nil, recs
}

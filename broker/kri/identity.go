package kri

import (
	"fmt"
	"time"

	"github.com/custos-pam/custos/broker"
)

// The indicators of users and their credentials. The second-factor
// indicators count the enabled local users of the config (single sign-on
// users' factors are the provider's); stale and dormant count every
// enabled user the directory knows, single sign-on users included.

func localUsers(in *input) []string {
	var out []string
	for _, u := range in.cfg.Users {
		if !u.Disabled {
			out = append(out, u.Name)
		}
	}
	return out
}

// withoutMFA are the enabled local users who sign in with a password
// alone: no TOTP secret configured.
func withoutMFA(in *input) []Record {
	var recs []Record
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
	n := len(localUsers(in))
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

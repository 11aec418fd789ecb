package review

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/identity"
)

// directory resolves groups to users; *identity.Directory implements it.
type directory interface {
	Members(group string) ([]string, bool)
	Enabled(user string) bool
	// Users are every enabled user.
	Users() []identity.Identity
}

// resolve expands a policy list (users and groups) into enabled users,
// each with how it was named. An empty list with anyone set stands for
// every enabled user.
func resolve(dir directory, list []string, anyone bool) map[string][]string {
	out := map[string][]string{}
	if len(list) == 0 && anyone {
		for _, u := range dir.Users() {
			out[u.Name] = []string{"anyone"}
		}
		return out
	}
	for _, n := range list {
		if members, ok := dir.Members(n); ok {
			for _, m := range members {
				if dir.Enabled(m) && !slices.Contains(out[m], n) {
					out[m] = append(out[m], n)
				}
			}
			continue
		}
		if dir.Enabled(n) && !slices.Contains(out[n], "direct") {
			out[n] = append(out[n], "direct")
		}
	}
	return out
}

// Snapshot lists who may request and approve each target and role, who
// holds custody of each break-glass account, and the standing API tokens
// (unexpired, kind api) at now, in a stable order.
func Snapshot(cfg *config.Config, dir directory, tokens []broker.Token, now time.Time) []Entry {
	var out []Entry
	add := func(kind, object string, who map[string][]string) {
		for u, via := range who {
			slices.Sort(via)
			out = append(out, Entry{Kind: kind, User: u, Object: object, Via: via})
		}
	}
	for _, t := range cfg.Targets {
		for _, r := range t.Roles {
			obj := t.Name + "/" + r.Name
			if _, bg := cfg.BreakGlassFor(t.Name, r.Name); !bg {
				// Break-glass roles take no requests; their custodians
				// are listed below.
				add(KindRequester, obj, resolve(dir, r.Policy.Requesters, true))
			}
			add(KindApprover, obj, resolve(dir, r.Policy.Approvers, false))
		}
	}
	for _, a := range cfg.BreakGlass {
		add(KindCustodian, a.Name, resolve(dir, a.Custodians, false))
	}
	for _, tk := range tokens {
		if tk.Kind != "api" || !tk.ExpiresAt.After(now) {
			continue
		}
		out = append(out, Entry{Kind: KindToken, User: tk.User, Object: tk.ID, CreatedAt: tk.CreatedAt.UTC(),
			ExpiresAt: tk.ExpiresAt.UTC(), AgeDays: int(now.Sub(tk.CreatedAt) / (24 * time.Hour))})
	}
	sortEntries(out)
	return out
}

var kindOrder = map[string]int{KindRequester: 0, KindApprover: 1, KindCustodian: 2, KindToken: 3}

func sortEntries(es []Entry) {
	slices.SortFunc(es, func(a, b Entry) int {
		return cmp.Or(cmp.Compare(a.Object, b.Object), cmp.Compare(kindOrder[a.Kind], kindOrder[b.Kind]), cmp.Compare(a.User, b.User))
	})
}

// hashSnapshot is the hex SHA-256 of the previous attested review's hash
// and the snapshot, as canonical JSON.
func hashSnapshot(prev string, entries []Entry) (string, error) {
	b, err := json.Marshal(struct {
		Prev    string  `json:"prev"`
		Entries []Entry `json:"entries"`
	}{prev, entries})
	if err != nil {
		return "", fmt.Errorf("review: hash snapshot: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// hashResult is the hex SHA-256 of the snapshot hash, the lines with
// their marks, and the signature.
func hashResult(snapshotHash string, lines []Line, sig Signature) (string, error) {
	b, err := json.Marshal(struct {
		Snapshot  string    `json:"snapshot"`
		Lines     []Line    `json:"lines"`
		Signature Signature `json:"signature"`
	}{snapshotHash, lines, sig})
	if err != nil {
		return "", fmt.Errorf("review: hash result: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// Diff compares the current snapshot with the last attested one: entries
// only in cur are added, only in prev removed, and in both with another
// Via (or, for a token, another expiry) changed. A token's age alone is
// no change. Lines are numbered from 1 in snapshot order.
func Diff(prev, cur []Entry) []Line {
	old := make(map[string]Entry, len(prev))
	for _, e := range prev {
		old[e.key()] = e
	}
	seen := map[string]bool{}
	var lines []Line
	for _, e := range cur {
		k := e.key()
		seen[k] = true
		was, ok := old[k]
		switch {
		case !ok:
			lines = append(lines, Line{Op: OpAdded, Entry: e})
		case !slices.Equal(was.Via, e.Via) || !was.ExpiresAt.Equal(e.ExpiresAt):
			w := was
			lines = append(lines, Line{Op: OpChanged, Entry: e, Was: &w})
		}
	}
	for _, e := range prev {
		if !seen[e.key()] {
			lines = append(lines, Line{Op: OpRemoved, Entry: e})
		}
	}
	slices.SortStableFunc(lines, func(a, b Line) int {
		x, y := a.Entry, b.Entry
		return cmp.Or(cmp.Compare(x.Object, y.Object), cmp.Compare(kindOrder[x.Kind], kindOrder[y.Kind]), cmp.Compare(x.User, y.User))
	})
	for i := range lines {
		lines[i].N = i + 1
		lines[i].Text = lines[i].text()
	}
	return lines
}

// text is the line as people read it.
func (l Line) text() string {
	e := l.Entry
	var s string
	switch e.Kind {
	case KindToken:
		s = fmt.Sprintf("%s token %s of %s (age %dd)", l.Op, e.Object, e.User, e.AgeDays)
	default:
		s = fmt.Sprintf("%s %s %s on %s", l.Op, e.Kind, e.User, e.Object)
	}
	if len(e.Via) > 0 && e.Kind != KindToken {
		s += " (via " + strings.Join(e.Via, ", ") + ")"
	}
	if l.Op == OpChanged && l.Was != nil {
		if e.Kind == KindToken {
			s += " (expiry " + l.Was.ExpiresAt.Format(time.DateOnly) + " → " + e.ExpiresAt.Format(time.DateOnly) + ")"
		} else {
			s += " (was via " + strings.Join(l.Was.Via, ", ") + ")"
		}
	}
	return s
}

package policy

import (
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
)

func TestExtendedEnd(t *testing.T) {
	start := utc(2026, 1, 5, 10, 0) // a Monday
	grant := func(d time.Duration) broker.Grant {
		return broker.Grant{ID: "gr_1", StartsAt: start, EndsAt: start.Add(d), State: broker.GrantActive}
	}
	office := &config.Window{Days: []string{"mon"}, Start: "09:00", End: "12:00"}
	pol := func(maxDur time.Duration, w *config.Window) config.Policy {
		return config.Policy{MaxDuration: config.Duration(maxDur), Window: w}
	}
	for _, tc := range []struct {
		name  string
		pol   config.Policy
		g     broker.Grant
		extra time.Duration
		want  time.Time
		code  string
	}{
		{"within max", pol(2*time.Hour, nil), grant(time.Hour), 30 * time.Minute, start.Add(90 * time.Minute), ""},
		{"exactly max in all", pol(2*time.Hour, nil), grant(time.Hour), time.Hour, start.Add(2 * time.Hour), ""},
		{"one second past max in all", pol(2*time.Hour, nil), grant(time.Hour), time.Hour + time.Second, time.Time{}, CodeExtensionExceedsMax},
		{"already at max", pol(time.Hour, nil), grant(time.Hour), time.Minute, time.Time{}, CodeExtensionExceedsMax},
		{"default max (8h) applies", config.Policy{}, grant(7 * time.Hour), 2 * time.Hour, time.Time{}, CodeExtensionExceedsMax},
		{"zero", pol(2*time.Hour, nil), grant(time.Hour), 0, time.Time{}, CodeDurationInvalid},
		{"negative", pol(2*time.Hour, nil), grant(time.Hour), -time.Minute, time.Time{}, CodeDurationInvalid},
		{"clipped at the window's end", pol(8*time.Hour, office), grant(time.Hour), 3 * time.Hour, utc(2026, 1, 5, 12, 0), ""},
		{"window leaves nothing", pol(8*time.Hour, office), grant(2 * time.Hour), time.Hour, time.Time{}, CodeOutsideWindow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ExtendedEnd(tc.pol, tc.g, tc.extra, start.Add(30*time.Minute))
			if CodeOf(err) != tc.code || (tc.code == "" && err != nil) {
				t.Fatalf("err = %v, want code %q", err, tc.code)
			}
			if !got.Equal(tc.want) {
				t.Fatalf("end = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCheckExtension(t *testing.T) {
	dir := GroupsFromConfig([]config.Group{{Name: "dbas", Members: []string{"alice"}}, {Name: "approvers", Members: []string{"bob"}}})
	pol := config.Policy{Requesters: []string{"dbas"}, Approvers: []string{"approvers"}, Approvals: 1,
		MaxDuration: config.Duration(2 * time.Hour), RequireReason: true}
	now := utc(2026, 1, 5, 10, 30)
	g := broker.Grant{ID: "gr_1", User: "alice", StartsAt: utc(2026, 1, 5, 10, 0), EndsAt: utc(2026, 1, 5, 11, 0)}
	for _, tc := range []struct {
		name, user, reason string
		extra              time.Duration
		code               string
	}{
		{"ok", "alice", "more", 30 * time.Minute, ""},
		{"no longer a requester", "mallory", "more", 30 * time.Minute, CodeNotRequester},
		{"reason required", "alice", " ", 30 * time.Minute, CodeReasonRequired},
		{"past max in all, though the extra alone is within", "alice", "more", 90 * time.Minute, CodeExtensionExceedsMax},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckExtension(pol, dir, tc.user, g, tc.extra, tc.reason, "", now); CodeOf(err) != tc.code {
				t.Fatalf("err = %v, want %q", err, tc.code)
			}
		})
	}
}

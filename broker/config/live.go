package config

import (
	"reflect"
	"sync/atomic"
)

// Live is a running broker's current config. A reload on SIGHUP swaps it
// whole; the parts that read policy, targets, users and groups per use
// take them from here, so each use sees one consistent config.
type Live struct{ p atomic.Pointer[Config] }

// NewLive returns a Live holding c.
func NewLive(c *Config) *Live {
	l := &Live{}
	l.p.Store(c)
	return l
}

// Load returns the current config. Treat it as read-only.
func (l *Live) Load() *Config { return l.p.Load() }

// Store makes c the current config.
func (l *Live) Store(c *Config) { l.p.Store(c) }

// FindTarget looks a target up in the current config.
func (l *Live) FindTarget(name string) (*Target, bool) { return l.Load().FindTarget(name) }

// Merge returns the config a reload runs with: cur with next's reloadable
// parts, and the names of the parts next changes that a reload cannot
// apply (the caller warns; they take effect at the next restart). The
// reloadable parts are users, groups, security_admins, targets (with their
// roles' policies), notify, indicators (but its interval), and the Slack
// routing settings (channel, security_channel, match_email, ticket_url);
// everything else is read once at start. The caller validates the result again.
func Merge(cur, next *Config) (merged *Config, notApplied []string) {
	m := *cur
	m.Users, m.Groups, m.SecurityAdmins, m.Targets, m.Notify = next.Users, next.Groups, next.SecurityAdmins, next.Targets, next.Notify
	m.Reviews = next.Reviews
	m.Indicators = next.Indicators
	m.Indicators.Interval = cur.Indicators.Interval
	m.Slack.Channel, m.Slack.SecurityChannel, m.Slack.MatchEmail, m.Slack.TicketURL =
		next.Slack.Channel, next.Slack.SecurityChannel, next.Slack.MatchEmail, next.Slack.TicketURL
	// What is left must be equal, or the change is not applied.
	a, b := m, *next
	for _, s := range []struct {
		name string
		x, y any
	}{
		{"listen", a.Listen, b.Listen}, {"public_url", a.PublicURL, b.PublicURL}, {"store", a.Store, b.Store},
		{"recording", a.Recording, b.Recording}, {"audit", a.Audit, b.Audit}, {"vault", a.Vault, b.Vault},
		{"slack (enabled, tokens, signing secret, api_url)", a.Slack, b.Slack}, {"auth", a.Auth, b.Auth},
		{"breakglass", a.BreakGlass, b.BreakGlass}, {"indicators.interval", a.Indicators.Interval, b.Indicators.Interval},
		{"identity (oidc, scim, webauthn, step_up)", a.Identity, b.Identity},
	} {
		if !reflect.DeepEqual(s.x, s.y) {
			notApplied = append(notApplied, s.name)
		}
	}
	return &m, notApplied
}

package config

import "time"

// DefaultGrantEndingBefore is notify.grant_ending_before's default.
const DefaultGrantEndingBefore = 10 * time.Minute

// Notify configures notices the broker sends on its own.
type Notify struct {
	// GrantEndingBefore is how long before an active grant ends its
	// holder is told (a Slack DM when Slack is on, a log line, and an
	// "ending soon" mark in the CLI and the web UI), once per grant.
	// 0 turns the notice off. Default: 10m.
	GrantEndingBefore *Duration `yaml:"grant_ending_before"`
}

// EndingBefore is GrantEndingBefore with its default applied; 0 means off.
func (n Notify) EndingBefore() time.Duration {
	if n.GrantEndingBefore == nil {
		return DefaultGrantEndingBefore
	}
	return n.GrantEndingBefore.D()
}

func (n Notify) validate(ck *checker) {
	if n.GrantEndingBefore != nil && n.GrantEndingBefore.D() < 0 {
		ck.add("notify.grant_ending_before", "must not be negative (0 turns the notice off)")
	}
}

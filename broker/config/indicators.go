package config

import (
	"fmt"
	"strings"
	"time"
)

// Indicators configures the key risk indicators on the dashboard and the
// quality tolerance limits set on them (see docs/indicators.md).
type Indicators struct {
	// Limits are the quality tolerance limits. Crossing one raises an
	// alert once per crossing and opens an action. Default: none.
	Limits []Limit `yaml:"limits"`
	// Interval is how often the limits are evaluated. Default: 1m; at
	// least 1s.
	Interval Duration `yaml:"interval"`
	// Lookback is the window of the event indicators (rubber-stamp
	// approvals, collusion pairs, grants without a ticket, unseals,
	// approval latency, unverified sessions). Default: 30d.
	Lookback Duration `yaml:"lookback"`
	// RubberStamp is the approval delay under which an approval counts as
	// a rubber stamp. Default: 30s.
	RubberStamp Duration `yaml:"rubber_stamp"`
	// StaleAfter is how long without a request makes a user stale.
	// Default: 90d.
	StaleAfter Duration `yaml:"stale_after"`
	// DormantAfter is how long without any activity makes an account
	// dormant. Default: 30d.
	DormantAfter Duration `yaml:"dormant_after"`
	// TokenRotation is the age past which an API token is overdue for
	// rotation. Default: 90d.
	TokenRotation Duration `yaml:"token_rotation"`
	// VerifyAfter is how long after a session ends the broker verifies
	// its recording in the background, once the upload has finished.
	// Default: 5m.
	VerifyAfter Duration `yaml:"verify_after"`
	// Owner is the user or group that owns the actions a crossing opens.
	// Default: the first group in security_admins.
	Owner string `yaml:"owner"`
}

// Limit is one quality tolerance limit: the indicator crosses it when
// "value op Value" holds, e.g. sessions_without_recording > 0.
type Limit struct {
	Indicator string  `yaml:"indicator"`
	Op        string  `yaml:"op"`
	Value     float64 `yaml:"value"`
}

// String is the limit as written in the docs: "indicator op value".
func (l Limit) String() string { return fmt.Sprintf("%s %s %g", l.Indicator, l.Op, l.Value) }

// Crossed reports whether v crosses the limit.
func (l Limit) Crossed(v float64) bool {
	switch l.Op {
	case ">":
		return v > l.Value
	case ">=":
		return v >= l.Value
	case "<":
		return v < l.Value
	case "<=":
		return v <= l.Value
	}
	return false
}

// Indicator defaults.
const (
	DefaultIndicatorInterval = time.Minute
	DefaultIndicatorLookback = 30 * 24 * time.Hour
	DefaultRubberStamp       = 30 * time.Second
	DefaultStaleAfter        = 90 * 24 * time.Hour
	DefaultDormantAfter      = 30 * 24 * time.Hour
	DefaultTokenRotation     = 90 * 24 * time.Hour
)

func orDur(d Duration, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d.D()
}

// IntervalOrDefault is Interval with its default.
func (i Indicators) IntervalOrDefault() time.Duration {
	return orDur(i.Interval, DefaultIndicatorInterval)
}

// LookbackOrDefault is Lookback with its default.
func (i Indicators) LookbackOrDefault() time.Duration {
	return orDur(i.Lookback, DefaultIndicatorLookback)
}

// RubberStampOrDefault is RubberStamp with its default.
func (i Indicators) RubberStampOrDefault() time.Duration {
	return orDur(i.RubberStamp, DefaultRubberStamp)
}

// StaleAfterOrDefault is StaleAfter with its default.
func (i Indicators) StaleAfterOrDefault() time.Duration {
	return orDur(i.StaleAfter, DefaultStaleAfter)
}

// DormantAfterOrDefault is DormantAfter with its default.
func (i Indicators) DormantAfterOrDefault() time.Duration {
	return orDur(i.DormantAfter, DefaultDormantAfter)
}

// TokenRotationOrDefault is TokenRotation with its default.
func (i Indicators) TokenRotationOrDefault() time.Duration {
	return orDur(i.TokenRotation, DefaultTokenRotation)
}

// VerifyAfterOrDefault is VerifyAfter with its default.
func (i Indicators) VerifyAfterOrDefault() time.Duration {
	return orDur(i.VerifyAfter, 5*time.Minute)
}

// OwnerOrDefault is the owner of new actions: Owner, else the first
// security_admins group, else "security".
func (c *Config) OwnerOrDefault() string {
	if c.Indicators.Owner != "" {
		return c.Indicators.Owner
	}
	if len(c.SecurityAdmins) > 0 {
		return c.SecurityAdmins[0]
	}
	return "security"
}

func (c *Config) validateIndicators(ck *checker) {
	in := c.Indicators
	if in.Interval != 0 && in.Interval.D() < time.Second {
		ck.add("indicators.interval", "must be at least 1s")
	}
	for _, f := range []struct {
		name string
		d    Duration
	}{{"lookback", in.Lookback}, {"rubber_stamp", in.RubberStamp}, {"stale_after", in.StaleAfter},
		{"dormant_after", in.DormantAfter}, {"token_rotation", in.TokenRotation}, {"verify_after", in.VerifyAfter}} {
		if f.d < 0 {
			ck.add("indicators."+f.name, "must not be negative")
		}
	}
	for i, l := range in.Limits {
		p := fmt.Sprintf("indicators.limits[%d]", i)
		if strings.TrimSpace(l.Indicator) == "" {
			ck.add(p+".indicator", "required")
		}
		switch l.Op {
		case ">", ">=", "<", "<=":
		default:
			ck.add(p+".op", "must be one of > >= < <=, not %q", l.Op)
		}
	}
}

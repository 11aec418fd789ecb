package sqlstore

import (
	"fmt"
	"time"

	"github.com/custos-pam/custos/broker"
)

// Times are stored as text in broker.AuditTimeFormat: UTC, fixed width,
// nanosecond precision. Fixed width makes text order time order, so the
// same comparisons work in both databases and values round-trip exactly.
func fmtTime(t time.Time) string { return t.UTC().Format(broker.AuditTimeFormat) }

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(broker.AuditTimeFormat, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse stored time %q: %w", s, err)
	}
	return t.UTC(), nil
}

// utc normalizes a time for storage: UTC location, no monotonic reading.
// The zero time stays zero.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Round(0)
}

func nowUTC() time.Time { return time.Now().UTC().Round(0) }

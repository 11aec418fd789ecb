package slack

import (
	"context"
	"time"
)

// FastTimings shortens the background intervals for tests.
func FastTimings(s *Slack) {
	s.t.poll = 20 * time.Millisecond
	s.t.sweep = 100 * time.Millisecond
	s.t.retryBase = 100 * time.Millisecond
	s.t.retryMax = 500 * time.Millisecond
	s.t.lease = 2 * time.Second
	s.t.call = 5 * time.Second
}

// SetMaxAge sets how long an outbox item is retried before it is given up.
func SetMaxAge(s *Slack, d time.Duration) { s.t.maxAge = d }

// OutboxLen returns the number of queued outbox items.
func OutboxLen(s *Slack) int {
	d, err := s.loadOutbox(context.Background())
	if err != nil {
		return -1
	}
	return len(d.Items)
}

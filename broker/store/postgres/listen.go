package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/custos-pam/custos/broker"
)

// notification is the pg_notify payload: the event plus the Store that
// sent it, so a Store can skip its own events (it delivers those itself).
type notification struct {
	Origin string `json:"origin"`
	broker.GrantEvent
}

// maxReason bounds the reason carried in a notification; NOTIFY payloads
// must stay under 8000 bytes.
const maxReason = 1024

func clip(ev broker.GrantEvent) broker.GrantEvent {
	if len(ev.Reason) > maxReason {
		r := ev.Reason[:maxReason]
		for !utf8.ValidString(r) {
			r = r[:len(r)-1]
		}
		ev.Reason = r
	}
	return ev
}

// Reconnect backoff for the listening connection: after an outage of
// the database the listener is back within maxBackoff of its return.
const (
	minBackoff = 500 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// startListener opens the listening connection and returns once LISTEN
// is in place, so no event committed after Open returns is missed.
func (s *Store) startListener(ctx context.Context, cfg *pgx.ConnConfig) error {
	first, err := listenConn(ctx, cfg)
	if err != nil {
		return err
	}
	lctx, cancel := context.WithCancel(context.Background())
	s.stopListen = cancel
	s.listenDone = make(chan struct{})
	go s.listen(lctx, cfg, first)
	return nil
}

func listenConn(ctx context.Context, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := c.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		c.Close(context.Background())
		return nil, err
	}
	return c, nil
}

// listen delivers notifications until ctx ends, reconnecting with backoff
// when the connection fails.
func (s *Store) listen(ctx context.Context, cfg *pgx.ConnConfig, c *pgx.Conn) {
	defer close(s.listenDone)
	backoff := minBackoff
	for {
		if c != nil {
			err := s.receive(ctx, c)
			c.Close(context.Background())
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("grant event listener lost its connection; other brokers' grant events are missed until it reconnects",
				"err", err)
			backoff = minBackoff
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		var err error
		c, err = listenConn(ctx, cfg)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("grant event listener cannot reconnect", "err", err, "retry_in", backoff.String())
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		s.log.Info("grant event listener reconnected; subscribers re-check their grants")
		// Notifications sent while the connection was down are lost:
		// subscribers re-read what they hold.
		s.hub.Publish(broker.GrantEvent{Resync: true})
	}
}

func (s *Store) receive(ctx context.Context, c *pgx.Conn) error {
	for {
		n, err := c.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		var msg notification
		if err := json.Unmarshal([]byte(n.Payload), &msg); err != nil {
			s.log.Warn("ignoring malformed grant notification", "err", fmt.Errorf("decode: %w", err))
			continue
		}
		if msg.Origin == s.origin {
			continue
		}
		s.hub.Publish(msg.GrantEvent)
	}
}

// Package stream sends every audit record, in seq order, to a SIEM: a
// signed webhook or a syslog server over TLS. A Streamer reads the records
// after its cursor from the store, hands them to a Sink, and advances the
// cursor once the sink accepted them, so delivery never blocks or fails an
// append and survives a restart (at least once: a record accepted just
// before a crash, with its cursor not yet written, is sent again).
package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/custos-pam/custos/broker"
)

// Viewer is the part of broker.Store a Streamer reads through.
type Viewer interface {
	View(ctx context.Context, fn func(broker.Tx) error) error
}

// Sink delivers records to one destination.
type Sink interface {
	// Send delivers recs, which are in seq order and follow the last
	// record it accepted, and returns how many of them the destination
	// accepted (a prefix) and why it stopped short.
	Send(ctx context.Context, recs []broker.AuditRecord) (int, error)
	// Close releases the sink's connections.
	Close() error
}

// Options configure a Streamer.
type Options struct {
	// Name names the destination in logs ("webhook", "syslog"). Required.
	Name string
	// Store holds the audit log. Required.
	Store Viewer
	// Sink delivers the records. Required.
	Sink Sink
	// Cursor is the file holding the seq of the last record the sink
	// accepted. Required; a missing file means none (the whole log is
	// sent).
	Cursor string
	// Poll is how often the store is checked for new records when Notify
	// is not called. Default: 1s.
	Poll time.Duration
	// MinBackoff and MaxBackoff bound the wait before a failed send is
	// retried; it doubles from MinBackoff. Default: 500ms and 1m.
	MinBackoff, MaxBackoff time.Duration
	// Batch is the most records handed to the sink at once. Default: 100.
	Batch int
	// Log logs failures. Default: slog.Default().
	Log *slog.Logger
}

// Streamer streams the audit log to one Sink.
type Streamer struct {
	o    Options
	wake chan struct{}
	// sent is the seq of the last record the sink accepted, -1 until
	// Run read the cursor.
	sent atomic.Int64
}

// New checks the options and applies their defaults.
func New(o Options) (*Streamer, error) {
	if o.Name == "" || o.Store == nil || o.Sink == nil || o.Cursor == "" {
		return nil, errors.New("audit stream: name, store, sink and cursor are required")
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 500 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Minute
	}
	o.MaxBackoff = max(o.MaxBackoff, o.MinBackoff)
	if o.Batch <= 0 {
		o.Batch = 100
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	s := &Streamer{o: o, wake: make(chan struct{}, 1)}
	s.sent.Store(-1)
	return s, nil
}

// Drain waits until the sink accepted every record in the store, or ctx
// ends; a shutdown calls it after its last record, before ending Run.
func (s *Streamer) Drain(ctx context.Context) error {
	for {
		s.Notify()
		if sent := s.sent.Load(); sent >= 0 {
			var next []broker.AuditRecord
			err := s.o.Store.View(ctx, func(tx broker.Tx) error {
				var err error
				next, err = tx.ListAudit(broker.AuditFilter{AfterSeq: sent, Limit: 1})
				return err
			})
			if err == nil && len(next) == 0 {
				return nil
			}
		}
		if !sleep(ctx, 20*time.Millisecond) {
			return fmt.Errorf("audit stream %s: not drained: %w", s.o.Name, context.Cause(ctx))
		}
	}
}

// Notify tells Run that a record was appended, so it need not wait for
// the next poll. It never blocks.
func (s *Streamer) Notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run streams until ctx ends, then closes the sink. Store and sink
// failures are logged and retried with backoff; a record is never sent
// before every record before it was accepted.
func (s *Streamer) Run(ctx context.Context) {
	defer s.o.Sink.Close()
	log := s.o.Log.With("stream", s.o.Name)
	cursor, err := ReadCursor(s.o.Cursor)
	for err != nil {
		// A damaged cursor is not guessed at: resending the whole log or
		// skipping part of it are both wrong without an operator.
		log.Error("audit stream cursor unreadable; fix or delete it (deleting resends the whole log)", "cursor", s.o.Cursor, "err", err)
		if !sleep(ctx, s.o.MaxBackoff) {
			return
		}
		cursor, err = ReadCursor(s.o.Cursor)
	}
	s.sent.Store(cursor)
	backoff := s.o.MinBackoff
	for ctx.Err() == nil {
		recs, err := s.after(ctx, cursor)
		if err == nil && len(recs) == 0 {
			select {
			case <-ctx.Done():
			case <-s.wake:
			case <-time.After(s.o.Poll):
			}
			continue
		}
		var n int
		if err == nil {
			n, err = s.o.Sink.Send(ctx, recs)
			if n > 0 {
				cursor = recs[n-1].Seq
				if werr := WriteCursor(s.o.Cursor, cursor); werr != nil && err == nil {
					err = werr
				}
				s.sent.Store(cursor)
			}
		}
		if err == nil {
			backoff = s.o.MinBackoff
			continue
		}
		if ctx.Err() != nil {
			return
		}
		log.Warn("audit stream delivery failed; retrying", "next_seq", cursor+1, "retry_in", backoff.String(), "err", err)
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(backoff*2, s.o.MaxBackoff)
	}
}

// after reads up to Batch records after seq and checks they follow it
// without a gap.
func (s *Streamer) after(ctx context.Context, seq int64) ([]broker.AuditRecord, error) {
	var recs []broker.AuditRecord
	err := s.o.Store.View(ctx, func(tx broker.Tx) error {
		var err error
		recs, err = tx.ListAudit(broker.AuditFilter{AfterSeq: seq, Limit: s.o.Batch})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audit stream: read after seq %d: %w", seq, err)
	}
	for i, r := range recs {
		if r.Seq != seq+int64(i)+1 {
			return nil, fmt.Errorf("audit stream: seq %d missing from the store", seq+int64(i)+1)
		}
	}
	return recs, nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// ReadCursor returns the seq stored in a cursor file, or 0 when the file
// does not exist.
func ReadCursor(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("audit stream cursor: %w", err)
	}
	seq, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || seq < 0 {
		return 0, fmt.Errorf("audit stream cursor %s: not a seq", path)
	}
	return seq, nil
}

// WriteCursor replaces the cursor file atomically (write, sync, rename).
func WriteCursor(path string, seq int64) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("audit stream cursor: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(strconv.FormatInt(seq, 10) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("audit stream cursor: %w", err)
	}
	return nil
}

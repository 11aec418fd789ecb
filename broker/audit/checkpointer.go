package audit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/custos-pam/custos/broker"
)

// Checkpoint reasons.
const (
	ReasonStart    = "start"
	ReasonInterval = "interval"
	ReasonSealed   = "recording sealed"
	ReasonShutdown = "shutdown"
)

// CheckpointerOptions configure a Checkpointer.
type CheckpointerOptions struct {
	// Store is the state store holding the chain. Required.
	Store Viewer
	// Checkpoints is where checkpoints are written. Required.
	Checkpoints CheckpointStore
	// Signer signs them. Required.
	Signer Signer
	// Interval is how often Run writes one. Default: 5m.
	Interval time.Duration
	// Replica names this broker process in checkpoint names. Default: the
	// host name and a random suffix, new for every process.
	Replica string
	// MaxRecords bounds the records one checkpoint lists; a new process
	// also starts its first checkpoint this far behind the head. Default:
	// MaxCheckpointRecords.
	MaxRecords int
	// Log logs failures. Default: slog.Default().
	Log *slog.Logger
}

// Checkpointer writes signed checkpoints of the audit chain: at start,
// every Interval, when asked (a recording was sealed) and at shutdown. A
// checkpoint is written only when the chain grew since this process's
// previous one. It is safe for concurrent use.
type Checkpointer struct {
	o    CheckpointerOptions
	wake chan string

	mu       sync.Mutex
	lastSeq  int64
	lastHash string
}

// NewCheckpointer checks the options and applies their defaults.
func NewCheckpointer(o CheckpointerOptions) (*Checkpointer, error) {
	if o.Store == nil || o.Checkpoints == nil || o.Signer == nil {
		return nil, errors.New("audit checkpointer: store, checkpoint store and signer are required")
	}
	if o.Interval <= 0 {
		o.Interval = 5 * time.Minute
	}
	if o.Replica == "" {
		o.Replica = defaultReplica()
	}
	if !ValidCheckpointName(o.Replica + ".json") {
		return nil, fmt.Errorf("audit checkpointer: replica name %q: use letters, digits, '-' and '_'", o.Replica)
	}
	if o.MaxRecords <= 0 || o.MaxRecords > MaxCheckpointRecords {
		o.MaxRecords = MaxCheckpointRecords
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Checkpointer{o: o, wake: make(chan string, 1)}, nil
}

// defaultReplica is the host name, reduced to safe characters, and eight
// random hex digits.
func defaultReplica() string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, host)
	if len(host) > 40 {
		host = host[:40]
	}
	if host == "" {
		host = "broker"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// Replica returns the name this Checkpointer writes under.
func (c *Checkpointer) Replica() string { return c.o.Replica }

// Run writes a checkpoint at once, then every Interval and whenever
// Trigger asks, until ctx ends. Failures are logged and retried at the
// next occasion. Write the last checkpoint with Checkpoint after the last
// record of a shutdown.
func (c *Checkpointer) Run(ctx context.Context) {
	c.write(ctx, ReasonStart)
	t := time.NewTicker(c.o.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.write(ctx, ReasonInterval)
		case reason := <-c.wake:
			c.write(ctx, reason)
		}
	}
}

// Trigger asks Run for a checkpoint soon, without waiting for it.
func (c *Checkpointer) Trigger(reason string) {
	select {
	case c.wake <- reason:
	default: // one is pending already
	}
}

func (c *Checkpointer) write(ctx context.Context, reason string) {
	if _, err := c.Checkpoint(ctx, reason); err != nil && ctx.Err() == nil {
		c.o.Log.Warn("audit checkpoint not written; retrying at the next interval", "reason", reason, "err", err)
	}
}

// Checkpoint writes checkpoints of the records appended since this
// process's previous one (at most MaxRecords each) and returns
// the names written; none when the chain has not grown.
func (c *Checkpointer) Checkpoint(ctx context.Context, reason string) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastHash == "" {
		// A new process starts its first checkpoint a bounded distance
		// behind the head; records before it are covered by the head hash.
		head, err := headSeq(ctx, c.o.Store)
		if err != nil {
			return nil, fmt.Errorf("audit checkpoint: %w", err)
		}
		c.lastSeq = max(0, head-int64(c.o.MaxRecords))
	}
	var names []string
	for range 1000 {
		recs, err := readAfter(ctx, c.o.Store, c.lastSeq, c.o.MaxRecords)
		if err != nil {
			return names, fmt.Errorf("audit checkpoint: %w", err)
		}
		if len(recs) == 0 {
			return names, nil
		}
		if c.lastHash != "" && recs[0].PrevHash != c.lastHash {
			// Someone rewrote a record this process had checkpointed.
			// The checkpoint already written keeps the evidence; this one
			// records the chain as it is now.
			c.o.Log.Error("audit chain changed under the checkpointer: a record before the last checkpoint was rewritten; run custos audit verify",
				"seq", recs[0].Seq, "checkpointed_seq", c.lastSeq)
		}
		name, err := c.put(ctx, reason, recs)
		if err != nil {
			return names, err
		}
		names = append(names, name)
		last := recs[len(recs)-1]
		c.lastSeq, c.lastHash = last.Seq, last.Hash
		if len(recs) < c.o.MaxRecords {
			return names, nil
		}
	}
	return names, nil
}

func (c *Checkpointer) put(ctx context.Context, reason string, recs []broker.AuditRecord) (string, error) {
	head := recs[len(recs)-1]
	cp := Checkpoint{
		Format: CheckpointFormat, Version: CheckpointVersion,
		Seq: head.Seq, Hash: head.Hash, RecordTime: head.Time.UTC(), Time: time.Now().UTC(),
		Replica: c.o.Replica, Reason: reason, FromSeq: recs[0].Seq - 1,
		Digests: make([]string, len(recs)),
	}
	for i, r := range recs {
		if r.Seq != cp.FromSeq+1+int64(i) || len(r.Hash) < DigestLen {
			return "", fmt.Errorf("audit checkpoint: the store returned record %d where %d was expected", r.Seq, cp.FromSeq+1+int64(i))
		}
		cp.Digests[i] = r.Hash[:DigestLen]
	}
	body, err := SignCheckpoint(cp, c.o.Signer)
	if err != nil {
		return "", err
	}
	name := CheckpointName(cp)
	if err := c.o.Checkpoints.PutCheckpoint(ctx, name, body); err != nil {
		return "", fmt.Errorf("audit checkpoint %s: %w", name, err)
	}
	return name, nil
}

// readAfter reads up to limit records after seq, in seq order.
func readAfter(ctx context.Context, s Viewer, after int64, limit int) ([]broker.AuditRecord, error) {
	var out []broker.AuditRecord
	for len(out) < limit {
		var page []broker.AuditRecord
		err := s.View(ctx, func(tx broker.Tx) error {
			var err error
			page, err = tx.ListAudit(broker.AuditFilter{AfterSeq: after, Limit: min(pageSize, limit-len(out))})
			return err
		})
		if err != nil {
			return out, err
		}
		out = append(out, page...)
		if len(page) == 0 || len(page) < pageSize {
			return out, nil
		}
		after = page[len(page)-1].Seq
	}
	return out, nil
}

// headSeq finds the newest record's seq with ListAudit alone, by doubling
// and then halving AfterSeq: about 2·log2(head) one-row reads.
func headSeq(ctx context.Context, s Viewer) (int64, error) {
	exists := func(seq int64) (bool, error) {
		var page []broker.AuditRecord
		err := s.View(ctx, func(tx broker.Tx) error {
			var err error
			page, err = tx.ListAudit(broker.AuditFilter{AfterSeq: seq - 1, Limit: 1})
			return err
		})
		return len(page) > 0, err
	}
	lo, hi := int64(0), int64(1) // a record after lo exists; none at or after hi is known yet
	for {
		ok, err := exists(hi)
		if err != nil {
			return 0, err
		}
		if !ok {
			break
		}
		lo, hi = hi, hi*2
	}
	// Records exist at or after lo (or lo is 0) and none at or after hi.
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		ok, err := exists(mid)
		if err != nil {
			return 0, err
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo, nil
}

// Appender appends entries to the audit log; *Log implements it.
type Appender interface {
	Append(ctx context.Context, e Entry) (broker.AuditRecord, error)
}

// After returns an Appender that appends through a and, after each
// successful append of one of the actions, asks for a checkpoint with
// reason. The recorder's "session.recorded" is the usual one: a sealed
// recording's manifest hash is then checkpointed within moments.
func (c *Checkpointer) After(a Appender, reason string, actions ...string) Appender {
	return triggering{a: a, c: c, reason: reason, actions: actions}
}

type triggering struct {
	a       Appender
	c       *Checkpointer
	reason  string
	actions []string
}

func (t triggering) Append(ctx context.Context, e Entry) (broker.AuditRecord, error) {
	rec, err := t.a.Append(ctx, e)
	if err == nil {
		for _, a := range t.actions {
			if e.Action == a {
				t.c.Trigger(t.reason)
				break
			}
		}
	}
	return rec, err
}

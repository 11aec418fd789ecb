package slack

// The outbox is how everything reaches Slack. Notifiers and handlers only
// enqueue items in the state store, in a transaction of their own, and
// return; a worker delivers them in order.
//
// Guarantees:
//
//   - Nothing is lost: an item leaves the outbox only in the transaction
//     that records its effect (the message's channel and ts, the
//     requester's "notified" mark), or when it is given up after maxAge
//     (audited as slack.delivery with outcome error), or when Slack refuses
//     it for good (invalid_blocks and similar, also audited). A broker that
//     stops with items queued delivers them when it starts again.
//   - Nothing is sent twice: once-only items (posts, DMs, reminders,
//     notices) carry their item ID in the message metadata. An item is
//     claimed in a transaction that marks it in flight before the call; a
//     retry of an item whose previous attempt may have reached Slack (a 5xx
//     or a broken connection after the request was sent, or a broker that
//     died between the call and the commit) first searches the channel's
//     recent history for that metadata and adopts the message it finds
//     instead of posting again. Updates re-render from the store, so
//     repeating them is harmless, and several changes to one request
//     coalesce into one item.
//   - Slack's limits are honoured: a 429 pauses every call for its
//     Retry-After; other failures back off exponentially per item.
//
// What remains: an ephemeral reply (a refusal shown only to the clicker)
// cannot be found again, so a retry after an uncertain failure may show it
// twice. The search for an earlier attempt covers the conversation from
// five minutes before the first attempt, up to 2,000 messages; a post
// Slack accepted but did not yet list in history when the retry looked
// would be posted again. Neither can make a message claim a decision that
// was not made: every message is rendered from the store.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// Outbox item kinds.
const (
	kindPost      = "post"      // a request's message in one channel or DM
	kindUpdate    = "update"    // bring every message of a request up to date
	kindNotify    = "notify"    // DM the requester about a decision or revocation
	kindRemind    = "remind"    // reminder reply under a posted message
	kindEphemeral = "ephemeral" // private reply to one user
	kindNotice    = "notice"    // security channel notice
)

const (
	outboxKey        = "slack/outbox"
	requestKeyPrefix = "slack/request/"
)

// item is one queued delivery.
type item struct {
	// ID names what is delivered ("post/req_x/channel:C1"); enqueueing an
	// ID already queued coalesces into the queued item.
	ID      string `json:"id"`
	Kind    string `json:"kind"`
	Request string `json:"request,omitempty"`
	// Dest is "channel:<id>" or "user:<slack user id>".
	Dest    string `json:"dest,omitempty"`
	Channel string `json:"channel,omitempty"`
	User    string `json:"user,omitempty"`
	Text    string `json:"text,omitempty"`
	// LinkText and LinkURL are a notice's button to the web UI, if any.
	LinkText string `json:"link_text,omitempty"`
	LinkURL  string `json:"link_url,omitempty"`
	// Hold is a hold notice's hold ID: the notice gets Approve and Deny
	// buttons for it.
	Hold string `json:"hold,omitempty"`
	// Event is what a notify item tells: approved, denied, expired or revoked.
	Event string `json:"event,omitempty"`
	// Gen counts enqueues; an item changed while in flight runs again.
	Gen      int       `json:"gen"`
	Created  time.Time `json:"created"`
	Due      time.Time `json:"due"`
	Expires  time.Time `json:"expires"`
	Attempts int       `json:"attempts"`
	Lease    time.Time `json:"lease,omitzero"`
	InFlight bool      `json:"in_flight,omitempty"`
	// Uncertain is set when an earlier attempt may have reached Slack.
	Uncertain bool      `json:"uncertain,omitempty"`
	FirstTry  time.Time `json:"first_try,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

// once reports whether delivering the item twice would show twice.
func (it *item) once() bool {
	return it.Kind == kindPost || it.Kind == kindNotify || it.Kind == kindRemind || it.Kind == kindNotice
}

type outboxDoc struct {
	Items []*item `json:"items"`
}

func (d *outboxDoc) find(id string) *item {
	for _, it := range d.Items {
		if it.ID == id {
			return it
		}
	}
	return nil
}

func (d *outboxDoc) remove(id string) {
	d.Items = slices.DeleteFunc(d.Items, func(it *item) bool { return it.ID == id })
}

// posted is one message the broker posted for a request.
type posted struct {
	Dest    string `json:"dest"`
	Channel string `json:"channel"`
	TS      string `json:"ts"`
	// Shown is the fingerprint of what the message shows; "" when unknown.
	Shown string `json:"shown"`
}

// requestState is what the broker remembers about a request in Slack.
type requestState struct {
	Messages []posted `json:"messages,omitempty"`
	// Reminded is set once reminders were queued.
	Reminded bool `json:"reminded,omitempty"`
	// RemindedDests lists the messages that got their reminder.
	RemindedDests []string `json:"reminded_dests,omitempty"`
	// Notified lists the events the requester was told about.
	Notified []string `json:"notified,omitempty"`
	// GaveUp lists outbox items given up, which the sweeper does not queue
	// again.
	GaveUp []string `json:"gave_up,omitempty"`
}

func (st *requestState) message(dest string) (posted, bool) {
	for _, m := range st.Messages {
		if m.Dest == dest {
			return m, true
		}
	}
	return posted{}, false
}

func (st *requestState) setMessage(p posted) {
	for i, m := range st.Messages {
		if m.Dest == p.Dest {
			st.Messages[i] = p
			return
		}
	}
	st.Messages = append(st.Messages, p)
}

// getJSON reads a state document; a missing one leaves v as it is.
func getJSON(tx broker.Tx, key string, v any) error {
	b, err := tx.GetState(key)
	if errors.Is(err, broker.ErrNotFound) || (err == nil && len(b) == 0) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("state %s: %w", key, err)
	}
	return nil
}

func putJSON(tx broker.Tx, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.PutState(key, b)
}

func (s *Slack) loadRequestState(ctx context.Context, id string) (requestState, error) {
	var st requestState
	err := s.store.View(ctx, func(tx broker.Tx) error { return getJSON(tx, requestKeyPrefix+id, &st) })
	return st, err
}

func (s *Slack) loadOutbox(ctx context.Context) (outboxDoc, error) {
	var d outboxDoc
	err := s.store.View(ctx, func(tx broker.Tx) error { return getJSON(tx, outboxKey, &d) })
	return d, err
}

// enqueue adds items in one transaction, with also (when not nil) running
// in the same transaction, and wakes the worker.
func (s *Slack) enqueue(ctx context.Context, also func(broker.Tx) error, items ...*item) error {
	if len(items) == 0 && also == nil {
		return nil
	}
	err := s.store.Update(ctx, func(tx broker.Tx) error {
		if also != nil {
			if err := also(tx); err != nil {
				return err
			}
		}
		return s.enqueueTx(tx, items...)
	})
	if err != nil {
		return fmt.Errorf("enqueue: %w", err)
	}
	s.signal()
	return nil
}

// enqueueTx adds items inside tx.
func (s *Slack) enqueueTx(tx broker.Tx, items ...*item) error {
	var d outboxDoc
	if err := getJSON(tx, outboxKey, &d); err != nil {
		return err
	}
	now := s.now().UTC()
	for _, it := range items {
		if ex := d.find(it.ID); ex != nil {
			ex.Gen++
			continue
		}
		it.Created, it.Due = now, now
		if it.Expires.IsZero() {
			age := s.t.maxAge
			if it.Kind == kindEphemeral {
				age = s.t.ephemeral
			}
			it.Expires = now.Add(age)
		}
		d.Items = append(d.Items, it)
	}
	return putJSON(tx, outboxKey, &d)
}

func (s *Slack) runOutbox(ctx context.Context) {
	t := time.NewTicker(s.t.poll)
	defer t.Stop()
	for {
		s.deliverDue(ctx)
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-t.C:
		}
	}
}

// deliverDue delivers every item that is due, one at a time.
func (s *Slack) deliverDue(ctx context.Context) {
	for ctx.Err() == nil {
		s.mu.Lock()
		paused := s.now().Before(s.pausedUntil)
		s.mu.Unlock()
		if paused {
			return
		}
		it, err := s.claimNext(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("outbox claim failed", "err", err)
			}
			return
		}
		if it == nil {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, s.t.call)
		res := s.deliver(cctx, it)
		cancel()
		if err := s.finish(context.WithoutCancel(ctx), it, res); err != nil {
			s.log.Error("outbox finish failed", "item", it.ID, "err", err)
			return
		}
	}
}

// claimNext reserves the first due item and marks it in flight.
func (s *Slack) claimNext(ctx context.Context) (*item, error) {
	d, err := s.loadOutbox(ctx)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	if pickDue(d, now) == nil {
		return nil, nil
	}
	var claimed *item
	err = s.store.Update(ctx, func(tx broker.Tx) error {
		claimed = nil
		var d outboxDoc
		if err := getJSON(tx, outboxKey, &d); err != nil {
			return err
		}
		it := pickDue(d, now)
		if it == nil {
			return nil
		}
		if it.InFlight {
			// The claimer before us never finished: its call may have
			// reached Slack.
			it.Uncertain = true
		}
		it.InFlight, it.Lease = true, now.Add(s.t.lease)
		it.Attempts++
		if it.FirstTry.IsZero() {
			it.FirstTry = now
		}
		c := *it
		claimed = &c
		return putJSON(tx, outboxKey, &d)
	})
	return claimed, err
}

// pickDue returns the first item due at now. Updates and reminders of a
// request wait while its post is queued, so they never race the post.
func pickDue(d outboxDoc, now time.Time) *item {
	posting := map[string]bool{}
	for _, it := range d.Items {
		if it.Kind == kindPost {
			posting[it.Request] = true
		}
	}
	for _, it := range d.Items {
		if it.Due.After(now) || it.Lease.After(now) {
			continue
		}
		if (it.Kind == kindUpdate || it.Kind == kindRemind) && posting[it.Request] {
			continue
		}
		return it
	}
	return nil
}

// result is what one delivery attempt did.
type result struct {
	err error
	// posted are messages created or brought up to date.
	posted []posted
	// gone are destinations whose message no longer exists in Slack.
	gone     []string
	notified string
	reminded string
}

// finish records what an attempt did and settles the item: removed when
// done, rescheduled with backoff when not, given up when too old or refused
// for good.
func (s *Slack) finish(ctx context.Context, claimed *item, res result) error {
	now := s.now().UTC()
	retryAfter, uncertain, fatal := classify(res.err)
	if retryAfter > 0 {
		s.mu.Lock()
		if until := now.Add(retryAfter); until.After(s.pausedUntil) {
			s.pausedUntil = until
		}
		s.mu.Unlock()
	}
	var gaveUp *item
	err := s.store.Update(ctx, func(tx broker.Tx) error {
		gaveUp = nil
		if err := s.recordEffects(tx, claimed, res); err != nil {
			return err
		}
		var d outboxDoc
		if err := getJSON(tx, outboxKey, &d); err != nil {
			return err
		}
		it := d.find(claimed.ID)
		if it == nil {
			return putJSON(tx, outboxKey, &d)
		}
		switch {
		case res.err == nil && it.Gen == claimed.Gen:
			d.remove(it.ID)
		case res.err == nil:
			// Changed while in flight: deliver the newer state too.
			it.InFlight, it.Lease, it.Uncertain, it.Attempts, it.Due, it.LastError = false, time.Time{}, false, 0, now, ""
		case fatal || !now.Before(it.Expires):
			d.remove(it.ID)
			c := *it
			c.LastError = errText(res.err)
			gaveUp = &c
			if c.Request != "" {
				var st requestState
				if err := getJSON(tx, requestKeyPrefix+c.Request, &st); err != nil {
					return err
				}
				st.GaveUp = append(st.GaveUp, c.ID)
				if err := putJSON(tx, requestKeyPrefix+c.Request, &st); err != nil {
					return err
				}
			}
			if _, err := s.audit.AppendTx(ctx, tx, audit.Entry{Actor: "system", Action: "slack.delivery",
				Target: c.Request, Outcome: broker.OutcomeError, Reason: "gave up: " + c.LastError,
				Details: map[string]any{"item": c.ID, "kind": c.Kind, "attempts": c.Attempts, "request_id": c.Request}}); err != nil {
				return err
			}
		default:
			it.InFlight, it.Lease = false, time.Time{}
			it.Uncertain = it.Uncertain || (uncertain && it.once())
			it.LastError = errText(res.err)
			it.Due = now.Add(max(retryAfter, s.backoff(it.Attempts)))
		}
		return putJSON(tx, outboxKey, &d)
	})
	switch {
	case err != nil:
		return err
	case gaveUp != nil:
		s.log.Error("slack delivery given up", "item", gaveUp.ID, "attempts", gaveUp.Attempts, "err", gaveUp.LastError)
	case res.err != nil:
		s.log.Warn("slack delivery failed; will retry", "item", claimed.ID, "attempt", claimed.Attempts, "err", errText(res.err))
	}
	return nil
}

// recordEffects stores what a delivery did to the request's Slack state,
// and queues an update when a message was posted showing an older state
// than the request has now.
func (s *Slack) recordEffects(tx broker.Tx, it *item, res result) error {
	if it.Request == "" || (len(res.posted) == 0 && len(res.gone) == 0 && res.notified == "" && res.reminded == "") {
		return nil
	}
	key := requestKeyPrefix + it.Request
	var st requestState
	if err := getJSON(tx, key, &st); err != nil {
		return err
	}
	for _, p := range res.posted {
		st.setMessage(p)
	}
	for _, dest := range res.gone {
		st.Messages = slices.DeleteFunc(st.Messages, func(m posted) bool { return m.Dest == dest })
	}
	if res.notified != "" && !slices.Contains(st.Notified, res.notified) {
		st.Notified = append(st.Notified, res.notified)
	}
	if res.reminded != "" && !slices.Contains(st.RemindedDests, res.reminded) {
		st.RemindedDests = append(st.RemindedDests, res.reminded)
	}
	if err := putJSON(tx, key, &st); err != nil {
		return err
	}
	if it.Kind != kindPost || len(res.posted) == 0 {
		return nil
	}
	req, err := tx.GetRequest(it.Request)
	if err != nil {
		return err
	}
	var g *broker.Grant
	if req.GrantID != "" {
		if gr, err := tx.GetGrant(req.GrantID); err == nil {
			g = &gr
		}
	}
	if fp := fingerprint(req, g); fp != res.posted[0].Shown {
		return s.enqueueTx(tx, &item{ID: "update/" + req.ID, Kind: kindUpdate, Request: req.ID})
	}
	return nil
}

// backoff is the delay after the n-th failed attempt: retryBase doubling up
// to retryMax, with ±20% jitter so replicas do not retry in step.
func (s *Slack) backoff(attempts int) time.Duration {
	d := s.t.retryBase
	for i := 1; i < attempts && d < s.t.retryMax; i++ {
		d *= 2
	}
	d = min(d, s.t.retryMax)
	return d + time.Duration((rand.Float64()*0.4-0.2)*float64(d))
}

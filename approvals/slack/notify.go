package slack

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
)

// sweepLimit is how many of the newest requests each sweep looks at.
const sweepLimit = 200

// RequestChanged implements access.Notifier. It queues the request's
// messages (when it is new), the update of its messages and, once decided,
// the requester's DM, then returns without waiting for Slack.
func (s *Slack) RequestChanged(ctx context.Context, r broker.Request) {
	var items []*item
	if r.State == broker.RequestPending && len(r.Approvals)+len(r.Denials) == 0 {
		items = append(items, s.postItems(r)...)
	}
	items = append(items, updateItem(r.ID))
	switch r.State {
	case broker.RequestApproved, broker.RequestDenied, broker.RequestExpired:
		items = append(items, notifyItem(r.ID, string(r.State)))
	}
	if err := s.enqueue(context.WithoutCancel(ctx), nil, items...); err != nil {
		s.log.Error("queue slack messages failed", "request", r.ID, "err", err)
	}
}

// GrantChanged implements access.Notifier: a revoked, expired or extended
// grant shows on the request's messages, and a grant revoked by someone
// else is DMed to its holder.
func (s *Slack) GrantChanged(ctx context.Context, g broker.Grant) {
	if g.RequestID == "" {
		return
	}
	if g.State == broker.GrantActive {
		// An extension moved the end: the original request's messages
		// show the new one.
		if len(g.Extensions) > 0 {
			if err := s.enqueue(context.WithoutCancel(ctx), nil, updateItem(g.RequestID)); err != nil {
				s.log.Error("queue slack messages failed", "request", g.RequestID, "err", err)
			}
		}
		return
	}
	items := []*item{updateItem(g.RequestID)}
	if g.State == broker.GrantRevoked && g.RevokedBy != g.User {
		items = append(items, notifyItem(g.RequestID, "revoked"))
	}
	if err := s.enqueue(context.WithoutCancel(ctx), nil, items...); err != nil {
		s.log.Error("queue slack messages failed", "request", g.RequestID, "err", err)
	}
}

// GrantEndingSoon implements access.EndingNotifier: the grant's holder
// gets a DM saying when it ends and how to ask for more time. One per
// grant and end (the item's ID says which end).
func (s *Slack) GrantEndingSoon(ctx context.Context, g broker.Grant) {
	if g.RequestID == "" {
		return
	}
	it := notifyItem(g.RequestID, endingEvent+strconv.FormatInt(g.EndsAt.Unix(), 10))
	if err := s.enqueue(context.WithoutCancel(ctx), nil, it); err != nil {
		s.log.Error("queue slack messages failed", "grant", g.ID, "err", err)
	}
}

// postItems are the messages a new request gets: one in its approval
// channel and, when policy says so, one DM per eligible approver.
func (s *Slack) postItems(r broker.Request) []*item {
	var items []*item
	if ch := s.channelFor(r.Target); ch != "" {
		items = append(items, &item{ID: "post/" + r.ID + "/channel:" + ch, Kind: kindPost, Request: r.ID, Dest: "channel:" + ch})
	}
	if pol, ok := s.policy(r.Target, r.Role); ok && pol.DMApprovers {
		for _, u := range s.eligible(pol, r.User) {
			if id := s.slackIDOf(u); id != "" {
				items = append(items, &item{ID: "post/" + r.ID + "/user:" + id, Kind: kindPost, Request: r.ID, Dest: "user:" + id})
			}
		}
	}
	return items
}

func updateItem(id string) *item { return &item{ID: "update/" + id, Kind: kindUpdate, Request: id} }

func notifyItem(id, event string) *item {
	return &item{ID: "notify/" + id + "/" + event, Kind: kindNotify, Request: id, Event: event}
}

// eligible lists the users who may decide a request by requester: every
// user named in the role's approvers or a member of a group named there,
// except the requester.
func (s *Slack) eligible(pol config.Policy, requester string) []string {
	var out []string
	add := func(u string) {
		if u != "" && u != requester && !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	for _, n := range pol.Approvers {
		if members, ok := s.dir.Members(n); ok {
			for _, m := range members {
				add(m)
			}
			continue
		}
		add(n)
	}
	return out
}

// undecided lists the eligible approvers who have not voted.
func (s *Slack) undecided(r broker.Request) []string {
	pol, ok := s.policy(r.Target, r.Role)
	if !ok {
		return nil
	}
	voted := func(u string) bool {
		return slices.ContainsFunc(r.Approvals, func(d broker.Decision) bool { return d.By == u }) ||
			slices.ContainsFunc(r.Denials, func(d broker.Decision) bool { return d.By == u })
	}
	return slices.DeleteFunc(s.eligible(pol, r.User), voted)
}

func (s *Slack) runSweeper(ctx context.Context) {
	t := time.NewTicker(s.t.sweep)
	defer t.Stop()
	for {
		if err := s.sweep(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("slack sweep failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweep compares the newest requests with what Slack was told, and queues
// what is missing: the post of a pending request the broker stopped before
// queueing, the update of a message showing an older state, the requester's
// DM, and reminders that fell due. Enqueueing is idempotent, so sweeps on
// several replicas do no harm.
func (s *Slack) sweep(ctx context.Context) error {
	reqs, err := s.access.ListRequests(ctx, broker.RequestFilter{Limit: sweepLimit})
	if err != nil {
		return err
	}
	d, err := s.loadOutbox(ctx)
	if err != nil {
		return err
	}
	queued := map[string]bool{}
	for _, it := range d.Items {
		queued[it.ID] = true
	}
	now := s.now()
	for _, r := range reqs {
		st, err := s.loadRequestState(ctx, r.ID)
		if err != nil {
			return err
		}
		var items []*item
		if len(st.Messages) == 0 {
			if r.State == broker.RequestPending && r.ExpiresAt.After(now) {
				for _, it := range s.postItems(r) {
					if !queued[it.ID] && !slices.Contains(st.GaveUp, it.ID) {
						items = append(items, it)
					}
				}
			}
			if err := s.enqueue(ctx, nil, items...); err != nil {
				return err
			}
			continue
		}
		var g *broker.Grant
		if r.GrantID != "" {
			if gr, err := s.access.GetGrant(ctx, r.GrantID); err == nil {
				g = &gr
			}
		}
		fp := fingerprint(r, g)
		if slices.ContainsFunc(st.Messages, func(p posted) bool { return p.Shown != fp }) && !queued["update/"+r.ID] && !slices.Contains(st.GaveUp, "update/"+r.ID) {
			items = append(items, updateItem(r.ID))
		}
		var events []string
		switch r.State {
		case broker.RequestApproved, broker.RequestDenied, broker.RequestExpired:
			events = append(events, string(r.State))
		}
		if g != nil && g.State == broker.GrantRevoked && g.RevokedBy != g.User {
			events = append(events, "revoked")
		}
		for _, ev := range events {
			if it := notifyItem(r.ID, ev); !slices.Contains(st.Notified, ev) && !queued[it.ID] && !slices.Contains(st.GaveUp, it.ID) {
				items = append(items, it)
			}
		}
		var also func(broker.Tx) error
		if s.reminderDue(r, st, now) {
			for _, p := range st.Messages {
				items = append(items, &item{ID: "remind/" + r.ID + "/" + p.Dest, Kind: kindRemind, Request: r.ID, Dest: p.Dest})
			}
			also = func(tx broker.Tx) error {
				var cur requestState
				if err := getJSON(tx, requestKeyPrefix+r.ID, &cur); err != nil {
					return err
				}
				cur.Reminded = true
				return putJSON(tx, requestKeyPrefix+r.ID, &cur)
			}
		}
		if err := s.enqueue(ctx, also, items...); err != nil {
			return err
		}
	}
	return nil
}

// reminderDue reports whether a pending request has reached its role's
// remind_before and was not reminded yet.
func (s *Slack) reminderDue(r broker.Request, st requestState, now time.Time) bool {
	if r.State != broker.RequestPending || st.Reminded || !now.Before(r.ExpiresAt) {
		return false
	}
	pol, ok := s.policy(r.Target, r.Role)
	return ok && pol.RemindBefore > 0 && !now.Before(r.ExpiresAt.Add(-pol.RemindBefore.D()))
}

package access

import (
	"context"
	"errors"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// EndingNotifier is a Notifier that also tells a grant's holder that it
// ends soon (notify.grant_ending_before); the Slack channel DMs them.
type EndingNotifier interface {
	GrantEndingSoon(ctx context.Context, g broker.Grant)
}

// endingNoticeKey is the store state key that records the end a grant's
// ending notice was sent for.
func endingNoticeKey(grantID string) string { return "notice/grant-ending/" + grantID }

// errNoticed rolls back a notice another broker already sent.
var errNoticed = errors.New("ending notice already sent")

// NoticeEnding sends the ending notice of every active grant that ends
// within notify.grant_ending_before (0: off) and has not had one for its
// current end: an audit record grant.ending_notice and each
// EndingNotifier. The mark is kept in the store, inside the transaction
// that writes the audit record, so the notice goes out once per grant and
// end across restarts and replicas (store transactions run one at a
// time). A grant extended after its notice gets another before its new
// end. Break-glass grants are left out: they have no extension.
func (s *Service) NoticeEnding(ctx context.Context) error {
	before := s.cfg.Load().Notify.EndingBefore()
	if before <= 0 {
		return nil
	}
	now := s.now().UTC()
	var due []broker.Grant
	err := s.store.View(ctx, func(tx broker.Tx) error {
		gs, err := tx.ListGrants(broker.GrantFilter{States: []broker.GrantState{broker.GrantActive}, EndsBefore: now.Add(before)})
		if err != nil {
			return err
		}
		for _, g := range gs {
			if g.BreakGlass != "" || !g.ActiveAt(now) || noticed(tx, g) {
				continue
			}
			due = append(due, g)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, g := range due {
		sent, err := s.noticeOne(ctx, g.ID, before)
		if err != nil {
			return err
		}
		if sent != nil {
			s.log.Info("grant ends soon; holder notified", "grant", sent.ID, "user", sent.User, "ends_at", sent.EndsAt)
			for _, n := range s.notifiers {
				if en, ok := n.(EndingNotifier); ok {
					en.GrantEndingSoon(ctx, *sent)
				}
			}
		}
	}
	return nil
}

// noticeOne marks and audits the notice of grant id if it is still due;
// it returns the grant when this call sent it.
func (s *Service) noticeOne(ctx context.Context, id string, before time.Duration) (*broker.Grant, error) {
	var g broker.Grant
	err := s.store.Update(ctx, func(tx broker.Tx) error {
		var err error
		if g, err = tx.GetGrant(id); err != nil {
			return err
		}
		now := s.now().UTC()
		if g.State != broker.GrantActive || !g.ActiveAt(now) || g.EndsAt.Sub(now) > before || noticed(tx, g) {
			return errNoticed
		}
		if err := tx.PutState(endingNoticeKey(g.ID), []byte(g.EndsAt.UTC().Format(time.RFC3339Nano))); err != nil {
			return err
		}
		d := grantDetails(g)
		d["notice_before"] = before.String()
		_, err = s.audit.AppendTx(ctx, tx, audit.Entry{Actor: "system", Action: "grant.ending_notice", Target: g.Target,
			Outcome: broker.OutcomeSuccess, Details: d})
		return err
	})
	if errors.Is(err, errNoticed) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &g, nil
}

// noticed reports whether g's notice was sent for its current end.
func noticed(tx broker.Tx, g broker.Grant) bool {
	b, err := tx.GetState(endingNoticeKey(g.ID))
	if err != nil {
		return false
	}
	at, err := time.Parse(time.RFC3339Nano, string(b))
	return err == nil && at.Equal(g.EndsAt)
}

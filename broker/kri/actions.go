package kri

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// Action states.
const (
	ActionOpen   = "open"
	ActionClosed = "closed"
)

// Audit actions of the limits and their actions.
const (
	AuditLimitCrossed = "kri.limit_crossed"
	AuditLimitCleared = "kri.limit_cleared"
	AuditActionClose  = "kri.action.close"
)

// Action is the follow-up a limit crossing opens: dated, owned, and on
// the dashboard until someone closes it with a comment.
type Action struct {
	ID        string    `json:"id"`
	Indicator string    `json:"indicator"`
	Limit     string    `json:"limit"`
	Value     float64   `json:"value"`
	OpenedAt  time.Time `json:"opened_at"`
	Owner     string    `json:"owner"`
	State     string    `json:"state"`
	// Link is the dashboard list of the indicator's records.
	Link string `json:"link"`
	// Records are the first records behind the value at the crossing.
	Records []Record `json:"records"`
	// AuditSeq is the kri.limit_crossed record.
	AuditSeq int64     `json:"audit_seq"`
	ClosedAt time.Time `json:"closed_at,omitzero"`
	ClosedBy string    `json:"closed_by,omitempty"`
	Comment  string    `json:"comment,omitempty"`
}

// actionsKey holds every action, oldest first, as one JSON array.
const actionsKey = "kri/actions"

// maxActionRecords caps the records an action keeps.
const maxActionRecords = 20

func loadActions(tx broker.Tx) ([]Action, error) {
	b, err := tx.GetState(actionsKey)
	if errors.Is(err, broker.ErrNotFound) || (err == nil && len(b) == 0) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var as []Action
	if err := json.Unmarshal(b, &as); err != nil {
		return nil, fmt.Errorf("decode %s: %w", actionsKey, err)
	}
	return as, nil
}

func saveActions(tx broker.Tx, as []Action) error {
	b, err := json.Marshal(as)
	if err != nil {
		return err
	}
	return tx.PutState(actionsKey, b)
}

// DashboardLink is the dashboard with one indicator's records open.
func DashboardLink(indicator string) string { return "/ui/dashboard?indicator=" + indicator }

// Actions returns the open actions, or every action with all, newest
// first.
func (e *Evaluator) Actions(ctx context.Context, all bool) ([]Action, error) {
	var as []Action
	err := e.o.Store.View(ctx, func(tx broker.Tx) error {
		var err error
		as, err = loadActions(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("kri: actions: %w", err)
	}
	out := []Action{}
	for i := len(as) - 1; i >= 0; i-- {
		if all || as[i].State == ActionOpen {
			out = append(out, as[i])
		}
	}
	return out, nil
}

// CloseAction closes an open action with the actor's comment, audited
// as kri.action.close.
func (e *Evaluator) CloseAction(ctx context.Context, actor, id, comment string) (Action, error) {
	comment = strings.TrimSpace(comment)
	if comment == "" {
		return Action{}, broker.Refuse(broker.KindInvalid, "comment_required", "closing an action needs a comment saying what was done")
	}
	now := e.now()
	var a Action
	err := e.o.Store.Update(ctx, func(tx broker.Tx) error {
		as, err := loadActions(tx)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(as, func(x Action) bool { return x.ID == id })
		if i < 0 {
			return broker.Refuse(broker.KindNotFound, "not_found", "no action %s", id)
		}
		if as[i].State != ActionOpen {
			return broker.Refuse(broker.KindConflict, "action_closed", "action %s was closed by %s at %s", id,
				as[i].ClosedBy, as[i].ClosedAt.Format(time.RFC3339))
		}
		as[i].State, as[i].ClosedAt, as[i].ClosedBy, as[i].Comment = ActionClosed, now, actor, comment
		a = as[i]
		if err := saveActions(tx, as); err != nil {
			return err
		}
		_, err = e.o.Audit.AppendTx(ctx, tx, audit.Entry{Actor: actor, Action: AuditActionClose, Target: a.Indicator,
			Outcome: broker.OutcomeSuccess, Reason: comment,
			Details: map[string]any{"action_id": a.ID, "limit": a.Limit, "opened_at": a.OpenedAt, "owner": a.Owner}})
		return err
	})
	if err != nil {
		if _, ok := broker.AsError(err); ok {
			return Action{}, err
		}
		return Action{}, fmt.Errorf("kri: close action: %w", err)
	}
	e.refreshOpen(ctx)
	return a, nil
}

package review

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/esign"
)

// State keys: the index of every review, oldest first, and each review.
const (
	indexKey  = "review:index"
	keyPrefix = "review:"
)

// people is what the service asks the directory: group members for the
// snapshot, and who the reviewers and security admins are.
type people interface {
	directory
	InGroup(user, group string) bool
	IsSecurityAdmin(user string) bool
}

// auditLog appends records inside a store transaction; *audit.Log
// implements it.
type auditLog interface {
	AppendTx(ctx context.Context, tx broker.Tx, e audit.Entry) (broker.AuditRecord, error)
	Append(ctx context.Context, e audit.Entry) (broker.AuditRecord, error)
}

// Options configure a Service; every field but Now and Log is required.
type Options struct {
	// Config is read on each call, so a reload applies.
	Config    *config.Live
	Directory people
	Store     broker.Store
	Audit     auditLog
	Signer    signer
	Now       func() time.Time
	Log       *slog.Logger
}

// Service runs access reviews.
type Service struct {
	o Options
}

// New returns a Service.
func New(o Options) (*Service, error) {
	if o.Config == nil || o.Directory == nil || o.Store == nil || o.Audit == nil || o.Signer == nil {
		return nil, errors.New("review: config, directory, store, audit and signer are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Service{o: o}, nil
}

// isReviewer reports whether user is named in reviews.reviewers (by
// default the security admins), directly or through a group.
func (s *Service) isReviewer(user string) bool {
	if user == "" || !s.o.Directory.Enabled(user) {
		return false
	}
	for _, r := range s.o.Config.Load().ReviewersOrDefault() {
		if r == user || s.o.Directory.InGroup(user, r) {
			return true
		}
	}
	return false
}

func (s *Service) facts(user string) access.Facts {
	return access.Facts{Security: s.o.Directory.IsSecurityAdmin(user), Reviewer: s.isReviewer(user)}
}

func (s *Service) may(a access.Action, user string) error {
	if !access.Allowed(a, s.facts(user)) {
		return broker.Refuse(broker.KindForbidden, "forbidden", "only the configured access reviewers may do this")
	}
	return nil
}

func getJSON[T any](tx broker.Tx, key string) (T, bool, error) {
	var v T
	b, err := tx.GetState(key)
	if errors.Is(err, broker.ErrNotFound) || (err == nil && len(b) == 0) {
		return v, false, nil
	}
	if err != nil {
		return v, false, fmt.Errorf("review: read %s: %w", key, err)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, false, fmt.Errorf("review: decode %s: %w", key, err)
	}
	return v, true, nil
}

func putJSON(tx broker.Tx, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("review: encode %s: %w", key, err)
	}
	if err := tx.PutState(key, b); err != nil {
		return fmt.Errorf("review: write %s: %w", key, err)
	}
	return nil
}

func loadReview(tx broker.Tx, id string) (Review, error) {
	if !strings.HasPrefix(id, "rev_") {
		return Review{}, broker.Refuse(broker.KindNotFound, "not_found", "no review %q", id)
	}
	r, ok, err := getJSON[Review](tx, keyPrefix+id)
	if err != nil {
		return Review{}, err
	}
	if !ok {
		return Review{}, broker.Refuse(broker.KindNotFound, "not_found", "no review %q", id)
	}
	return r, nil
}

// saveReview stores r and its line in the index.
func saveReview(tx broker.Tx, r *Review) error {
	idx, _, err := getJSON[[]Summary](tx, indexKey)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(idx, func(x Summary) bool { return x.ID == r.ID })
	if i < 0 {
		idx = append(idx, r.Summary())
	} else {
		idx[i] = r.Summary()
	}
	if err := putJSON(tx, keyPrefix+r.ID, r); err != nil {
		return err
	}
	return putJSON(tx, indexKey, idx)
}

// standingTokens reads every token of every user.
func standingTokens(tx broker.Tx) ([]broker.Token, error) {
	users, err := tx.ListTokenUsers()
	if err != nil {
		return nil, fmt.Errorf("review: list token users: %w", err)
	}
	var out []broker.Token
	for _, u := range users {
		ts, err := tx.ListTokens(u)
		if err != nil {
			return nil, fmt.Errorf("review: list tokens: %w", err)
		}
		out = append(out, ts...)
	}
	return out, nil
}

// lastAttested returns the newest attested review in idx, if any.
func lastAttested(idx []Summary) (Summary, bool) {
	for i := len(idx) - 1; i >= 0; i-- {
		if idx[i].State == StateAttested {
			return idx[i], true
		}
	}
	return Summary{}, false
}

// Start takes a snapshot and opens a review of its diff against the last
// attested review. Only one review is open at a time.
func (s *Service) Start(ctx context.Context, actor, name string) (Review, error) {
	if err := s.may(access.ConductReview, actor); err != nil {
		s.refused(ctx, actor, "review.start", "", err)
		return Review{}, err
	}
	name = strings.TrimSpace(name)
	now := s.o.Now().UTC()
	if name == "" {
		name = fmt.Sprintf("%dQ%d", now.Year(), (int(now.Month())+2)/3)
	}
	if len(name) > 64 {
		return Review{}, broker.Refuse(broker.KindInvalid, "invalid", "a review name has at most 64 characters")
	}
	var out Review
	err := s.o.Store.Update(ctx, func(tx broker.Tx) error {
		idx, _, err := getJSON[[]Summary](tx, indexKey)
		if err != nil {
			return err
		}
		for _, x := range idx {
			if x.State == StateOpen {
				return broker.Refuse(broker.KindConflict, "review_open", "review %s (%s) is still open: attest it first", x.ID, x.Name)
			}
		}
		var base Review
		if last, ok := lastAttested(idx); ok {
			if base, err = loadReview(tx, last.ID); err != nil {
				return err
			}
		}
		tokens, err := standingTokens(tx)
		if err != nil {
			return err
		}
		snap := Snapshot(s.o.Config.Load(), s.o.Directory, tokens, now)
		r := Review{ID: broker.NewID("rev"), Name: name, StartedBy: actor, StartedAt: now, State: StateOpen,
			Base: base.ID, PrevHash: base.SnapshotHash, Snapshot: snap, Lines: Diff(base.Snapshot, snap)}
		if r.SnapshotHash, err = hashSnapshot(r.PrevHash, snap); err != nil {
			return err
		}
		if err := saveReview(tx, &r); err != nil {
			return err
		}
		if _, err := s.o.Audit.AppendTx(ctx, tx, audit.Entry{Actor: actor, Action: "review.start", Target: r.ID,
			Outcome: broker.OutcomeSuccess, Details: map[string]any{"name": r.Name, "base": r.Base, "prev_hash": r.PrevHash,
				"snapshot_hash": r.SnapshotHash, "entries": len(snap), "lines": len(r.Lines)}}); err != nil {
			return err
		}
		out = r
		return nil
	})
	if err != nil {
		s.refused(ctx, actor, "review.start", "", err)
		return Review{}, err
	}
	s.o.Log.Info("access review started", "review", out.ID, "by", actor, "lines", len(out.Lines))
	return out, nil
}

// List returns every review, newest first.
func (s *Service) List(ctx context.Context, actor string) ([]Summary, error) {
	if err := s.may(access.ViewReview, actor); err != nil {
		return nil, err
	}
	var idx []Summary
	err := s.o.Store.View(ctx, func(tx broker.Tx) error {
		var err error
		idx, _, err = getJSON[[]Summary](tx, indexKey)
		return err
	})
	slices.Reverse(idx)
	if idx == nil {
		idx = []Summary{}
	}
	return idx, err
}

// Get returns one review with its snapshot, lines and marks.
func (s *Service) Get(ctx context.Context, actor, id string) (Review, error) {
	if err := s.may(access.ViewReview, actor); err != nil {
		return Review{}, err
	}
	var r Review
	err := s.o.Store.View(ctx, func(tx broker.Tx) error {
		var err error
		r, err = loadReview(tx, id)
		return err
	})
	return r, err
}

// MaxComment bounds a mark's comment.
const MaxComment = 2000

// Mark records actor's verdict (attest or flag) on line n of an open
// review, replacing their earlier verdict on it. A flag needs a comment.
func (s *Service) Mark(ctx context.Context, actor, id string, n int, verdict, comment string) (Line, error) {
	action := "review.line." + verdict
	if err := s.may(access.ConductReview, actor); err != nil {
		s.refused(ctx, actor, action, id, err)
		return Line{}, err
	}
	comment = strings.TrimSpace(comment)
	switch {
	case verdict != VerdictAttest && verdict != VerdictFlag:
		return Line{}, broker.Refuse(broker.KindInvalid, "invalid", "a verdict is attest or flag, not %q", verdict)
	case verdict == VerdictFlag && comment == "":
		return Line{}, broker.Refuse(broker.KindInvalid, "comment_required", "a flag needs a comment saying what is wrong")
	case len(comment) > MaxComment:
		return Line{}, broker.Refuse(broker.KindInvalid, "invalid", "a comment has at most %d characters", MaxComment)
	}
	var out Line
	err := s.o.Store.Update(ctx, func(tx broker.Tx) error {
		r, err := loadReview(tx, id)
		if err != nil {
			return err
		}
		if r.State != StateOpen {
			return broker.Refuse(broker.KindConflict, "review_closed", "review %s is already attested", id)
		}
		if n < 1 || n > len(r.Lines) {
			return broker.Refuse(broker.KindNotFound, "not_found", "review %s has no line %d", id, n)
		}
		l := &r.Lines[n-1]
		m := Mark{By: actor, Verdict: verdict, Comment: comment, At: s.o.Now().UTC()}
		l.Marks = slices.DeleteFunc(l.Marks, func(x Mark) bool { return x.By == actor })
		l.Marks = append(l.Marks, m)
		if err := saveReview(tx, &r); err != nil {
			return err
		}
		if _, err := s.o.Audit.AppendTx(ctx, tx, audit.Entry{Actor: actor, Action: action, Target: id,
			Outcome: broker.OutcomeSuccess, Details: map[string]any{"line": n, "text": l.Text, "comment": comment}}); err != nil {
			return err
		}
		out = *l
		return nil
	})
	if err != nil {
		s.refused(ctx, actor, action, id, err)
	}
	return out, err
}

// Attest signs an open review with the electronic-signature ceremony
// (esign, action review): actor re-authenticates (password and TOTP, or
// a passkey bound to "review:ID") and states a meaning from
// signatures.meanings.review. The signature covers the review's lines
// and marks as they were when signing began; the signature, the snapshot
// hash and a hash over the lines and their marks are stored and audited.
func (s *Service) Attest(ctx context.Context, actor, id, meaning string, in SignatureInput) (Review, error) {
	if err := s.may(access.ConductReview, actor); err != nil {
		s.refused(ctx, actor, "review.attest", id, err)
		return Review{}, err
	}
	cur, err := s.Get(ctx, actor, id)
	if err != nil {
		return Review{}, err
	}
	if cur.State != StateOpen {
		return Review{}, broker.Refuse(broker.KindConflict, "review_closed", "review %s is already attested", id)
	}
	rec, err := attestRecord(cur)
	if err != nil {
		return Review{}, err
	}
	signed, err := s.o.Signer.Sign(ctx, actor, rec, &esign.Input{Meaning: meaning, Password: in.Password, TOTP: in.TOTP,
		Passkey: in.Passkey, Source: in.Source})
	if err != nil {
		s.refused(ctx, actor, "review.attest", id, err)
		return Review{}, err
	}
	sig := stored(signed)
	var out Review
	err = s.o.Store.Update(ctx, func(tx broker.Tx) error {
		r, err := loadReview(tx, id)
		if err != nil {
			return err
		}
		if r.State != StateOpen {
			return broker.Refuse(broker.KindConflict, "review_closed", "review %s is already attested", id)
		}
		now, err := attestRecord(r)
		if err != nil {
			return err
		}
		if err := esign.Check(signed, now); err != nil {
			return err
		}
		a := &Attestation{By: actor, Signature: sig, Flagged: r.flagged()}
		if a.ResultHash, err = hashResult(r.SnapshotHash, r.Lines, sig); err != nil {
			return err
		}
		r.Attestation, r.State, r.AttestedAt = a, StateAttested, sig.Time
		if err := saveReview(tx, &r); err != nil {
			return err
		}
		if _, err := s.o.Audit.AppendTx(ctx, tx, audit.Entry{Actor: actor, Action: "review.attest", Target: id,
			Outcome: broker.OutcomeSuccess, Details: map[string]any{"name": r.Name,
				"printed_name": sig.PrintedName, "time": sig.Time.Format(time.RFC3339Nano), "meaning": sig.Meaning,
				"method": sig.Method, "signer": sig.Signer, "record_hash": sig.RecordHash, "snapshot_hash": r.SnapshotHash, "prev_hash": r.PrevHash,
				"result_hash": a.ResultHash, "lines": len(r.Lines), "flagged": a.Flagged}}); err != nil {
			return err
		}
		out = r
		return nil
	})
	if err != nil {
		s.refused(ctx, actor, "review.attest", id, err)
		return Review{}, err
	}
	s.o.Log.Info("access review attested", "review", id, "by", actor, "meaning", sig.Meaning)
	return out, nil
}

// refused audits a refused review step outside its transaction.
func (s *Service) refused(ctx context.Context, actor, action, target string, err error) {
	outcome, code, reason := broker.OutcomeError, "internal", err.Error()
	if e, ok := broker.AsError(err); ok {
		outcome, code = broker.OutcomeDenied, e.Code
		if e.Detail != "" {
			reason = e.Detail
		}
	}
	if _, aerr := s.o.Audit.Append(context.WithoutCancel(ctx), audit.Entry{Actor: actor, Action: action, Target: target,
		Outcome: outcome, Reason: reason, Details: map[string]any{"code": code}}); aerr != nil {
		s.o.Log.Error("audit append failed", "action", action, "err", aerr)
	}
}

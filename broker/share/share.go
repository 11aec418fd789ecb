// Package share keeps time-boxed, read-only share links: security staff
// give an inspector without an account one evidence bundle (a target and
// a period) or one recording. A link is a random token in a URL path;
// only its SHA-256 is stored, in the state store under "shares". The
// links are resolved by one anonymous route and nothing else accepts
// them. Creation, every use (or refused use of a known link) and
// revocation are audited with the actor and link id, never the token.
package share

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// StateKey is where the links are kept.
const StateKey = "shares"

// Kinds of link.
const (
	KindEvidence = "evidence"
	KindSession  = "session"
)

// MaxTTL bounds how long a link may live; DefaultTTL is used when none is
// asked for.
const (
	MaxTTL     = 30 * 24 * time.Hour
	DefaultTTL = 72 * time.Hour
)

// Errors of Resolve. A caller answers each the same way (not found), so
// a guesser learns nothing; the audit log tells them apart.
var (
	ErrUnknown = errors.New("share: unknown link")
	ErrExpired = errors.New("share: link expired")
	ErrRevoked = errors.New("share: link revoked")
)

// Link is one share link. Hash is the SHA-256 of its token.
type Link struct {
	ID        string    `json:"id"`
	Hash      string    `json:"hash"`
	Kind      string    `json:"kind"`
	Target    string    `json:"target,omitempty"`
	From      time.Time `json:"from,omitzero"`
	To        time.Time `json:"to,omitzero"`
	SessionID string    `json:"session_id,omitempty"`
	Note      string    `json:"note,omitempty"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	RevokedBy string    `json:"revoked_by,omitempty"`
	Uses      int       `json:"uses"`
	LastUseAt time.Time `json:"last_use_at,omitzero"`
}

// View is a link as lists show it: without its hash.
func (l Link) View() Link { l.Hash = ""; return l }

// State says whether a link still works at t: active, expired or revoked.
func (l Link) State(t time.Time) string {
	switch {
	case !l.RevokedAt.IsZero():
		return "revoked"
	case !t.Before(l.ExpiresAt):
		return "expired"
	}
	return "active"
}

// NewLink is what a link is created for.
type NewLink struct {
	Kind      string
	Target    string
	From, To  time.Time
	SessionID string
	TTL       time.Duration
	Note      string
}

// appender appends to the audit log inside a transaction; *audit.Log
// implements it.
type appender interface {
	AppendTx(ctx context.Context, tx broker.Tx, e audit.Entry) (broker.AuditRecord, error)
}

// Service creates, lists, revokes and resolves links. Callers check that
// the actor may share (access.ShareEvidence) first.
type Service struct {
	Store broker.Store
	Audit appender
	// Now defaults to time.Now.
	Now func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// Hash returns the stored form of a token.
func Hash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Create makes a link and returns it with its token, which is shown once.
func (s *Service) Create(ctx context.Context, actor string, in NewLink) (Link, string, error) {
	if in.TTL == 0 {
		in.TTL = DefaultTTL
	}
	switch {
	case in.TTL < 0 || in.TTL > MaxTTL:
		return Link{}, "", broker.Refuse(broker.KindInvalid, "bad_ttl", "a share link lives between a minute and %v", MaxTTL)
	case in.Kind == KindEvidence && (in.Target == "" || in.From.IsZero() || !in.From.Before(in.To)):
		return Link{}, "", broker.Refuse(broker.KindInvalid, "bad_share", "an evidence link needs a target and a period (from before to)")
	case in.Kind == KindSession && in.SessionID == "":
		return Link{}, "", broker.Refuse(broker.KindInvalid, "bad_share", "a session link needs a session id")
	case in.Kind != KindEvidence && in.Kind != KindSession:
		return Link{}, "", broker.Refuse(broker.KindInvalid, "bad_share", "kind must be evidence or session")
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return Link{}, "", fmt.Errorf("share: token: %w", err)
	}
	token := base64.RawURLEncoding.EncodeToString(raw[:])
	now := s.now()
	l := Link{ID: broker.NewID("shr"), Hash: Hash(token), Kind: in.Kind, Target: in.Target, From: in.From.UTC(),
		To: in.To.UTC(), SessionID: in.SessionID, Note: strings.TrimSpace(in.Note), CreatedBy: actor, CreatedAt: now,
		ExpiresAt: now.Add(in.TTL)}
	err := s.Store.Update(ctx, func(tx broker.Tx) error {
		links, err := load(tx)
		if err != nil {
			return err
		}
		// Links long past expiry or revocation are dropped (the audit
		// log keeps their story).
		kept := links[:0]
		for _, x := range links {
			if x.State(now) == "active" || now.Sub(x.ExpiresAt) < MaxTTL {
				kept = append(kept, x)
			}
		}
		if err := save(tx, append(kept, l)); err != nil {
			return err
		}
		_, err = s.Audit.AppendTx(ctx, tx, audit.Entry{Actor: actor, Action: "share.create", Target: l.Target,
			Outcome: broker.OutcomeSuccess, Reason: l.Note, Details: details(l)})
		return err
	})
	if err != nil {
		return Link{}, "", fmt.Errorf("share: create: %w", err)
	}
	return l, token, nil
}

// List returns every kept link, newest first, without hashes.
func (s *Service) List(ctx context.Context) ([]Link, error) {
	var links []Link
	err := s.Store.View(ctx, func(tx broker.Tx) error {
		var err error
		links, err = load(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("share: list: %w", err)
	}
	sort.Slice(links, func(i, j int) bool { return links[i].CreatedAt.After(links[j].CreatedAt) })
	out := make([]Link, len(links))
	for i, l := range links {
		out[i] = l.View()
	}
	return out, nil
}

// Revoke ends a link now.
func (s *Service) Revoke(ctx context.Context, actor, id, reason string) (Link, error) {
	var out Link
	err := s.Store.Update(ctx, func(tx broker.Tx) error {
		links, err := load(tx)
		if err != nil {
			return err
		}
		i := indexOf(links, func(l Link) bool { return l.ID == id })
		if i < 0 {
			return broker.Refuse(broker.KindNotFound, "no_share", "no share link %s", id)
		}
		if links[i].RevokedAt.IsZero() {
			links[i].RevokedAt, links[i].RevokedBy = s.now(), actor
		}
		out = links[i].View()
		if err := save(tx, links); err != nil {
			return err
		}
		_, err = s.Audit.AppendTx(ctx, tx, audit.Entry{Actor: actor, Action: "share.revoke", Target: out.Target,
			Outcome: broker.OutcomeSuccess, Reason: reason, Details: details(out)})
		return err
	})
	if err != nil {
		return Link{}, fmt.Errorf("share: revoke: %w", err)
	}
	return out, nil
}

// Resolve finds the link of token and, when it still works, counts and
// audits the use (from addr) in the same transaction. A known link that
// expired or was revoked is audited as a refused use. An unknown token is
// not audited (the caller rate-limits guessing).
func (s *Service) Resolve(ctx context.Context, token, addr string) (Link, error) {
	h := Hash(token)
	var out Link
	var refused error
	err := s.Store.Update(ctx, func(tx broker.Tx) error {
		links, err := load(tx)
		if err != nil {
			return err
		}
		i := indexOf(links, func(l Link) bool { return subtle.ConstantTimeCompare([]byte(l.Hash), []byte(h)) == 1 })
		if i < 0 {
			refused = ErrUnknown
			return nil
		}
		now := s.now()
		l := &links[i]
		d := details(l.View())
		d["source"] = addr
		switch l.State(now) {
		case "revoked":
			refused = ErrRevoked
		case "expired":
			refused = ErrExpired
		}
		if refused != nil {
			_, err := s.Audit.AppendTx(ctx, tx, audit.Entry{Actor: "share:" + l.ID, Action: "share.use", Target: l.Target,
				Outcome: broker.OutcomeDenied, Reason: strings.TrimPrefix(refused.Error(), "share: "), Details: d})
			return err
		}
		l.Uses++
		l.LastUseAt = now
		out = l.View()
		if err := save(tx, links); err != nil {
			return err
		}
		_, err = s.Audit.AppendTx(ctx, tx, audit.Entry{Actor: "share:" + l.ID, Action: "share.use", Target: l.Target,
			Outcome: broker.OutcomeSuccess, Details: d})
		return err
	})
	if err != nil {
		return Link{}, fmt.Errorf("share: resolve: %w", err)
	}
	if refused != nil {
		return Link{}, refused
	}
	return out, nil
}

func details(l Link) map[string]any {
	d := map[string]any{"share_id": l.ID, "kind": l.Kind, "created_by": l.CreatedBy, "expires_at": l.ExpiresAt}
	if l.Kind == KindSession {
		d["session_id"] = l.SessionID
	} else {
		d["from"], d["to"] = l.From, l.To
	}
	return d
}

func indexOf(links []Link, f func(Link) bool) int {
	for i, l := range links {
		if f(l) {
			return i
		}
	}
	return -1
}

func load(tx broker.Tx) ([]Link, error) {
	b, err := tx.GetState(StateKey)
	if errors.Is(err, broker.ErrNotFound) || (err == nil && len(b) == 0) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var links []Link
	if err := json.Unmarshal(b, &links); err != nil {
		return nil, fmt.Errorf("share: state: %w", err)
	}
	return links, nil
}

func save(tx broker.Tx, links []Link) error {
	b, err := json.Marshal(links)
	if err != nil {
		return err
	}
	return tx.PutState(StateKey, b)
}

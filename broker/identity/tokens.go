package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// Token kinds.
const (
	KindAPI = "api" // CLI and API bearer tokens
	KindWeb = "web" // browser sessions
	KindDB  = "db"  // connection tokens scoped to one target
)

// TokenPrefix starts every token secret, so a leaked one is easy to
// recognise and to scan for.
const TokenPrefix = "cst_"

// tokenBytes is the secret's entropy: 256 bits.
const tokenBytes = 32

var tokenB64 = base64.RawURLEncoding

// auditLog is the part of audit.Log the package uses.
type auditLog interface {
	Append(ctx context.Context, e audit.Entry) (broker.AuditRecord, error)
	AppendTx(ctx context.Context, tx broker.Tx, e audit.Entry) (broker.AuditRecord, error)
}

// Tokens issues, verifies, lists and revokes bearer tokens. Only the
// SHA-256 of a secret is stored; the secret itself is returned once, by
// Issue. Issuing and revoking are audited in the same transaction.
type Tokens struct {
	store broker.Store
	audit auditLog
	now   func() time.Time
	// enabled, when set, reports whether a token's user is still enabled:
	// tokens of disabled or removed users are refused and not issued.
	enabled func(user string) bool
	// audience, when set, is stamped on every new token, and a token
	// stamped with another audience is refused.
	audience string
}

// NewTokens returns a token service over store. now defaults to time.Now.
func NewTokens(store broker.Store, log auditLog, now func() time.Time) *Tokens {
	if now == nil {
		now = time.Now
	}
	return &Tokens{store: store, audit: log, now: now}
}

// HashToken returns the stored form of a secret: hex SHA-256.
func HashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func newSecret() (string, error) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return TokenPrefix + tokenB64.EncodeToString(b), nil
}

// Issue creates a token of kind for user, valid for ttl from now, and
// returns its secret. A db token must name its target. source is the
// client address the token is issued to.
func (t *Tokens) Issue(ctx context.Context, user, kind, target string, ttl time.Duration, source string) (string, broker.Token, error) {
	return t.issue(ctx, user, kind, target, ttl, source, Proof{}, audit.Entry{Actor: user, Action: "token.issue"})
}

// IssueProven is Issue for a token that carries how and when its holder
// authenticated (method, at): a web session minted from a sign-in.
func (t *Tokens) IssueProven(ctx context.Context, user, kind, target string, ttl time.Duration, source, method string, at time.Time) (string, broker.Token, error) {
	return t.issue(ctx, user, kind, target, ttl, source, Proof{Method: method, Time: at}, audit.Entry{Actor: user, Action: "token.issue"})
}

// issue stores a new token and appends entry (completed with the token's
// details) in the same transaction.
func (t *Tokens) issue(ctx context.Context, user, kind, target string, ttl time.Duration, source string, proof Proof, entry audit.Entry) (string, broker.Token, error) {
	switch {
	case user == "":
		return "", broker.Token{}, badRequest("issue token: user is required")
	case t.enabled != nil && !t.enabled(user):
		return "", broker.Token{}, badRequest("issue token: user " + user + " is disabled")
	case kind != KindAPI && kind != KindWeb && kind != KindDB:
		return "", broker.Token{}, badRequest(fmt.Sprintf("issue token: unknown kind %q", kind))
	case kind == KindDB && target == "":
		return "", broker.Token{}, badRequest("issue token: a db token needs a target")
	case ttl <= 0:
		return "", broker.Token{}, badRequest("issue token: ttl must be positive")
	}
	secret, err := newSecret()
	if err != nil {
		return "", broker.Token{}, fmt.Errorf("issue token: %w", err)
	}
	now := t.now().UTC()
	tok := broker.Token{
		ID: broker.NewID("tok"), Hash: HashToken(secret), User: user, Kind: kind, Target: target,
		CreatedAt: now, ExpiresAt: now.Add(ttl), Source: source,
		AuthMethod: proof.Method, Audience: t.audience,
	}
	if !proof.Time.IsZero() {
		tok.AuthTime = proof.Time.UTC()
	}
	details := tokenDetails(tok)
	if extra, ok := entry.Details.(map[string]any); ok {
		for k, v := range extra {
			details[k] = v
		}
	}
	entry.Target, entry.Outcome, entry.Details = target, broker.OutcomeSuccess, details
	err = t.store.Update(ctx, func(tx broker.Tx) error {
		if err := tx.PutToken(tok); err != nil {
			return err
		}
		_, err := t.audit.AppendTx(ctx, tx, entry)
		return err
	})
	if err != nil {
		return "", broker.Token{}, fmt.Errorf("issue token: %w", err)
	}
	return secret, tok, nil
}

// Verify returns the token whose secret this is, if it is of kind, not
// expired, and its user is still enabled. A token is expired from ExpiresAt on. Unknown, revoked,
// malformed and wrong-kind secrets are all token_invalid.
func (t *Tokens) Verify(ctx context.Context, secret, kind string) (broker.Token, error) {
	invalid := refusal(CodeTokenInvalid, "token is invalid or revoked: sign in again", "")
	if !strings.HasPrefix(secret, TokenPrefix) || len(secret) != len(TokenPrefix)+tokenB64.EncodedLen(tokenBytes) {
		invalid.Detail = "malformed secret"
		return broker.Token{}, invalid
	}
	var tok broker.Token
	err := t.store.View(ctx, func(tx broker.Tx) error {
		var err error
		tok, err = tx.GetTokenByHash(HashToken(secret))
		return err
	})
	if errors.Is(err, broker.ErrNotFound) {
		invalid.Detail = "unknown token"
		return broker.Token{}, invalid
	}
	if err != nil {
		return broker.Token{}, fmt.Errorf("verify token: %w", err)
	}
	if tok.Kind != kind {
		invalid.Detail = fmt.Sprintf("token %s is a %s token, not %s", tok.ID, tok.Kind, kind)
		return broker.Token{}, invalid
	}
	if tok.Audience != "" && tok.Audience != t.audience {
		invalid.Detail = fmt.Sprintf("token %s is bound to another broker's audience", tok.ID)
		return broker.Token{}, invalid
	}
	if t.enabled != nil && !t.enabled(tok.User) {
		invalid.Detail = fmt.Sprintf("token %s: user %s is disabled or removed", tok.ID, tok.User)
		return broker.Token{}, invalid
	}
	if !t.now().Before(tok.ExpiresAt) {
		return broker.Token{}, &Error{Kind: broker.KindUnauthenticated, Code: CodeTokenExpired, Detail: "token " + tok.ID + " expired",
			Message: "token expired at " + tok.ExpiresAt.UTC().Format(time.RFC3339) + ": sign in again"}
	}
	return tok, nil
}

// List returns the user's tokens, newest first, expired ones included.
// Hash is cleared: callers never need it.
func (t *Tokens) List(ctx context.Context, user string) ([]broker.Token, error) {
	var out []broker.Token
	err := t.store.View(ctx, func(tx broker.Tx) error {
		var err error
		out, err = tx.ListTokens(user)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	for i := range out {
		out[i].Hash = ""
	}
	if out == nil {
		out = []broker.Token{}
	}
	return out, nil
}

// Revoke deletes the token with that ID; by must own it. Another user's
// token answers not_found, like a missing one, so IDs cannot be probed.
func (t *Tokens) Revoke(ctx context.Context, id, by string) error {
	return t.revoke(ctx, id, by, false)
}

// revoke deletes a token owned by by, or any token when admin is set.
// Success and refusal are both audited.
func (t *Tokens) revoke(ctx context.Context, id, by string, admin bool) error {
	var tok broker.Token
	err := t.store.Update(ctx, func(tx broker.Tx) error {
		var err error
		tok, err = tx.GetToken(id)
		if errors.Is(err, broker.ErrNotFound) || (err == nil && tok.User != by && !admin) {
			return refusal(CodeNotFound, "no token "+id, "not found or not owned by "+by)
		}
		if err != nil {
			return err
		}
		if err := tx.DeleteToken(id); err != nil {
			return err
		}
		_, err = t.audit.AppendTx(ctx, tx, audit.Entry{Actor: by, Action: "token.revoke", Target: tok.Target,
			Outcome: broker.OutcomeSuccess, Details: tokenDetails(tok)})
		return err
	})
	var e *Error
	if errors.As(err, &e) {
		if _, aerr := t.audit.Append(ctx, audit.Entry{Actor: by, Action: "token.revoke", Outcome: broker.OutcomeDenied,
			Reason: e.Detail, Details: map[string]any{"token_id": id, "code": e.Code}}); aerr != nil {
			return fmt.Errorf("revoke token: audit refusal: %w", aerr)
		}
		return e
	}
	if err != nil {
		return fmt.Errorf("revoke token: %w", err)
	}
	return nil
}

// PurgeExpired deletes the tokens of every user and kind that expired
// before the given instant, and appends one token.purge record with the
// count in the same transaction when it deleted any. It returns how many
// it deleted.
func (t *Tokens) PurgeExpired(ctx context.Context, before time.Time) (int, error) {
	var n int
	before = before.UTC()
	err := t.store.Update(ctx, func(tx broker.Tx) error {
		var err error
		if n, err = tx.DeleteExpiredTokens(before); err != nil || n == 0 {
			return err
		}
		_, err = t.audit.AppendTx(ctx, tx, audit.Entry{Actor: "system", Action: "token.purge", Outcome: broker.OutcomeSuccess,
			Reason: "expired tokens deleted", Details: map[string]any{"deleted": n, "expired_before": before}})
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("purge tokens: %w", err)
	}
	return n, nil
}

func tokenDetails(t broker.Token) map[string]any {
	d := map[string]any{"token_id": t.ID, "user": t.User, "kind": t.Kind, "expires_at": t.ExpiresAt, "source": t.Source}
	if t.AuthMethod != "" {
		d["auth_method"] = t.AuthMethod
	}
	if t.Target != "" {
		d["target"] = t.Target
	}
	return d
}

func badRequest(msg string) *Error { return refusal(CodeBadRequest, msg, msg) }

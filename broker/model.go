package broker

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"strings"
	"time"
)

// RequestState is where an access request stands in its lifecycle.
type RequestState string

// Request states. Only pending requests change state.
const (
	RequestPending   RequestState = "pending"
	RequestApproved  RequestState = "approved"
	RequestDenied    RequestState = "denied"
	RequestExpired   RequestState = "expired"
	RequestCancelled RequestState = "cancelled"
)

// Decision is one approver's approval or denial of a request.
type Decision struct {
	By      string    `json:"by"`
	At      time.Time `json:"at"`
	Comment string    `json:"comment,omitempty"`
	// Via names the channel the decision came through: cli, web or slack.
	Via string `json:"via,omitempty"`
	// Signature is the decision's electronic signature, when the role
	// requires one (broker/esign).
	Signature *Signature `json:"signature,omitempty"`
}

// Signature is an electronic signature's manifestation (21 CFR Part 11
// §11.50): who signed (login and printed name), when (UTC), what it
// means, and how the signer re-authenticated. RecordHash links it to the
// record signed (§11.70): the SHA-256 of the signed fields, so it cannot
// be moved onto another record.
type Signature struct {
	Signer      string    `json:"signer"`
	PrintedName string    `json:"printed_name"`
	SignedAt    time.Time `json:"signed_at"`
	Meaning     string    `json:"meaning"`
	// Method is how the signer re-authenticated: password+totp or passkey.
	Method string `json:"method"`
	// Action is what was signed: approve, deny, unseal or review.
	Action string `json:"action"`
	// ObjectID is the signed record's ID (request, unseal or review).
	ObjectID   string `json:"object_id"`
	RecordHash string `json:"record_hash"`
}

// Manifestation is the signature as one line for people: printed name,
// login, UTC time, meaning, method, and the record it is linked to.
func (s Signature) Manifestation() string {
	return fmt.Sprintf("Signed by %s (%s) at %s UTC, meaning %q, re-authenticated by %s; %s of %s, record %s",
		s.PrintedName, s.Signer, s.SignedAt.UTC().Format("2006-01-02 15:04:05"), s.Meaning, s.Method,
		s.Action, s.ObjectID, s.RecordHash)
}

// Request is a user's ask for time-boxed access to one role on one target.
type Request struct {
	ID       string        `json:"id"`
	User     string        `json:"user"`
	Target   string        `json:"target"`
	Role     string        `json:"role"`
	Reason   string        `json:"reason,omitempty"`
	Ticket   string        `json:"ticket,omitempty"`
	Duration time.Duration `json:"duration_ns"`
	State    RequestState  `json:"state"`
	// Required is the number of distinct approvals the policy asked for when
	// the request was made.
	Required  int        `json:"required"`
	Approvals []Decision `json:"approvals"`
	Denials   []Decision `json:"denials,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	// ExpiresAt is when a still-pending request expires.
	ExpiresAt time.Time `json:"expires_at"`
	DecidedAt time.Time `json:"decided_at,omitzero"`
	GrantID   string    `json:"grant_id,omitempty"`
	// Extends names the active grant this request asks more time for; an
	// extension request is decided like any request of the grant's role,
	// and its approval moves the grant's end by Duration instead of
	// creating a grant. Empty for an ordinary request.
	Extends string `json:"extends,omitempty"`
	// GrantEndsAt is, for an extension, the grant's end when it was asked
	// for; approvers see it next to the end the extension would give.
	GrantEndsAt time.Time `json:"grant_ends_at,omitzero"`
}

// IsExtension reports whether r asks for more time on an existing grant.
func (r Request) IsExtension() bool { return r.Extends != "" }

// GrantState is where a grant stands.
type GrantState string

// Grant states.
const (
	GrantActive  GrantState = "active"
	GrantExpired GrantState = "expired"
	GrantRevoked GrantState = "revoked"
)

// Grant is approved, time-boxed access of one user to one role on one target.
type Grant struct {
	ID        string     `json:"id"`
	RequestID string     `json:"request_id"`
	User      string     `json:"user"`
	Target    string     `json:"target"`
	Role      string     `json:"role"`
	StartsAt  time.Time  `json:"starts_at"`
	EndsAt    time.Time  `json:"ends_at"`
	Approvers []string   `json:"approvers"`
	Reason    string     `json:"reason,omitempty"`
	Ticket    string     `json:"ticket,omitempty"`
	State     GrantState `json:"state"`
	// RevokedAt, RevokedBy and RevokeReason are set when the grant was revoked.
	RevokedAt    time.Time `json:"revoked_at,omitzero"`
	RevokedBy    string    `json:"revoked_by,omitempty"`
	RevokeReason string    `json:"revoke_reason,omitempty"`
	// BreakGlass names the break-glass account whose unseal opened this
	// grant; empty for ordinary grants. Only such grants get the
	// account's credential.
	BreakGlass string `json:"break_glass,omitempty"`
	// Extensions are the approved extension requests that moved EndsAt,
	// oldest first.
	Extensions []string `json:"extensions,omitempty"`
}

// EffectiveEnd is when access actually ended or will end: the revocation time
// for a revoked grant, otherwise EndsAt.
func (g Grant) EffectiveEnd() time.Time {
	if g.State == GrantRevoked && !g.RevokedAt.IsZero() && g.RevokedAt.Before(g.EndsAt) {
		return g.RevokedAt
	}
	return g.EndsAt
}

// ActiveAt reports whether the grant gave access at instant t.
func (g Grant) ActiveAt(t time.Time) bool {
	return !t.Before(g.StartsAt) && t.Before(g.EffectiveEnd())
}

// Token is an issued bearer credential. Only the SHA-256 of the secret is
// stored; the secret is shown once, to its owner.
type Token struct {
	ID   string `json:"id"`
	Hash string `json:"-"`
	User string `json:"user"`
	// Kind is "api" for CLI/API tokens, "web" for browser sessions and "db"
	// for connection tokens scoped to one target.
	Kind      string    `json:"kind"`
	Target    string    `json:"target,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// Source is the client address the token was issued to.
	Source string `json:"source,omitempty"`
	// AuthMethod is how its holder proved who they are when it was
	// issued: "password", "password+totp" or "sso". Empty for tokens
	// issued before the field existed and for tokens minted from another
	// token (db tokens).
	AuthMethod string `json:"auth_method,omitempty"`
	// AuthTime is when that proof happened (for sso, the provider's
	// auth_time when it sent one).
	AuthTime time.Time `json:"auth_time,omitzero"`
	// Audience is the broker the token is bound to; a broker refuses a
	// token bound to another audience. Empty: unbound (older tokens).
	Audience string `json:"audience,omitempty"`
}

// SessionState is where a recorded session stands.
type SessionState string

// Session states.
const (
	SessionLive        SessionState = "live"
	SessionClosed      SessionState = "closed"
	SessionInterrupted SessionState = "interrupted"
	SessionTerminated  SessionState = "terminated"
)

// Session is the index entry of one proxied, recorded session. The recording
// itself lives in the recording store; this is what lists and searches read.
type Session struct {
	ID         string       `json:"id"`
	GrantID    string       `json:"grant_id"`
	User       string       `json:"user"`
	Target     string       `json:"target"`
	Role       string       `json:"role"`
	Protocol   string       `json:"protocol"`
	ClientAddr string       `json:"client_addr,omitempty"`
	StartedAt  time.Time    `json:"started_at"`
	EndedAt    time.Time    `json:"ended_at,omitzero"`
	State      SessionState `json:"state"`
	// Bytes and Statements count relayed bytes and recorded statements.
	Bytes      int64 `json:"bytes"`
	Statements int64 `json:"statements"`
	// Index is searchable text: commands, SQL and file paths seen in the
	// session, appended as the session runs.
	Index string `json:"-"`
	// ManifestHash is the SHA-256 of the signed manifest once the session closed.
	ManifestHash string `json:"manifest_hash,omitempty"`
	// EndReason says why the session ended when it did not end normally.
	EndReason string `json:"end_reason,omitempty"`
	// Replica is the advertised URL (listen.advertise_url) of the broker
	// that proxies and records the session: while it is live, the other
	// replicas forward its live view and termination there.
	Replica string `json:"replica,omitempty"`
}

// NewID returns a random identifier with the given prefix, such as
// "req_5x2k…". It is URL- and shell-safe.
func NewID(prefix string) string {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("broker: crypto/rand failed: " + err.Error())
	}
	return prefix + "_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// DeviceSignIn is a started device sign-in (RFC 8628 device
// authorization grant): what the user opens and types at the identity
// provider, and the handle the CLI polls the broker with.
type DeviceSignIn struct {
	Handle                  string    `json:"handle"`
	UserCode                string    `json:"user_code"`
	VerificationURI         string    `json:"verification_uri"`
	VerificationURIComplete string    `json:"verification_uri_complete,omitempty"`
	ExpiresAt               time.Time `json:"expires_at"`
	// Interval is the least number of seconds between polls.
	Interval int `json:"interval"`
}

package broker

import (
	"context"
	"errors"
	"time"
)

// Store errors. Implementations wrap them so callers can use errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	// ErrStoreUnavailable marks a failure to reach the store (the database
	// is down, restarting, or the connection was lost). The operation may
	// succeed when retried; a change whose commit was cut off may already
	// be in place, which the retry then finds.
	ErrStoreUnavailable = errors.New("state store unavailable")
)

// Store is the broker's persistent state. Every change runs inside Update,
// so a transition, the records it creates and its audit entry commit or
// fail together. Implementations: broker/store/sqlite (the default) and
// broker/store/postgres (for several broker replicas).
type Store interface {
	// View runs fn in a read-only transaction.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in a read-write transaction, committing when fn
	// returns nil. Transactions are serialized where they touch the audit
	// chain, so concurrent appends never fork it.
	Update(ctx context.Context, fn func(Tx) error) error
	// GrantEvents delivers grant changes announced with Tx.NotifyGrant after
	// their transaction commits, from this process and, on the PostgreSQL
	// store, from every replica. The channel closes when ctx ends.
	GrantEvents(ctx context.Context) <-chan GrantEvent
	// Ping checks that the store answers.
	Ping(ctx context.Context) error
	Close() error
}

// Tx is one store transaction. Get methods return an error wrapping
// ErrNotFound when nothing matches. Put methods insert or replace by ID.
type Tx interface {
	GetRequest(id string) (Request, error)
	PutRequest(Request) error
	ListRequests(RequestFilter) ([]Request, error)

	GetGrant(id string) (Grant, error)
	PutGrant(Grant) error
	ListGrants(GrantFilter) ([]Grant, error)

	GetToken(id string) (Token, error)
	GetTokenByHash(hash string) (Token, error)
	PutToken(Token) error
	ListTokens(user string) ([]Token, error)
	// ListTokenUsers returns the names of the users holding any token,
	// sorted, so tokens of users no longer in config can be found.
	ListTokenUsers() ([]string, error)
	DeleteToken(id string) error
	// DeleteExpiredTokens deletes every token whose ExpiresAt is before
	// the given instant and returns how many it deleted.
	DeleteExpiredTokens(before time.Time) (int, error)

	GetSession(id string) (Session, error)
	PutSession(Session) error
	ListSessions(SessionFilter) ([]Session, error)

	// AppendAudit assigns Seq, PrevHash and Hash and appends the record.
	// ID and Time are filled in when empty.
	AppendAudit(AuditRecord) (AuditRecord, error)
	ListAudit(AuditFilter) ([]AuditRecord, error)

	// GetState and PutState hold small JSON documents by key for features
	// that need a little durable state of their own (scheduler marks,
	// break-glass accounts, drills).
	GetState(key string) ([]byte, error)
	PutState(key string, value []byte) error

	// GetLimit, PutLimit and DeleteExpiredLimits hold rate-limit state
	// (failed sign-ins, the audit throttle's tallies) that every broker
	// on the store shares: small JSON documents by key, each with an
	// expiry after which it no longer matters. GetLimit returns expired
	// documents too; DeleteExpiredLimits removes those that expired
	// before the given instant and returns how many.
	GetLimit(key string) ([]byte, error)
	PutLimit(key string, value []byte, expires time.Time) error
	DeleteExpiredLimits(before time.Time) (int, error)

	// NotifyGrant announces a grant change to GrantEvents subscribers once
	// the transaction commits.
	NotifyGrant(GrantEvent)
}

// GrantEvent tells proxies that a grant changed, so live sessions on an
// ended grant can be closed at once.
type GrantEvent struct {
	GrantID string     `json:"grant_id"`
	State   GrantState `json:"state"`
	Reason  string     `json:"reason,omitempty"`
	// Resync, set on an event of its own with no grant, says that events
	// may have been missed before it (another broker's notifications
	// while the store's listening connection was down). A subscriber
	// re-checks everything it holds against the store at once.
	Resync bool `json:"resync,omitempty"`
}

// RequestFilter selects requests; zero fields match everything. Results are
// ordered by CreatedAt, newest first.
type RequestFilter struct {
	User   string
	Target string
	States []RequestState
	// ExpiresBefore matches requests whose ExpiresAt is before it.
	ExpiresBefore time.Time
	Limit         int
}

// GrantFilter selects grants; zero fields match everything. Results are
// ordered by StartsAt, newest first.
type GrantFilter struct {
	User      string
	Target    string
	Role      string
	RequestID string
	States    []GrantState
	// EndsBefore matches grants whose EndsAt is before it.
	EndsBefore time.Time
	// ActiveAt matches grants that gave access at that instant
	// (StartsAt <= t < EffectiveEnd).
	ActiveAt time.Time
	Limit    int
}

// SessionFilter selects sessions; zero fields match everything. Results are
// ordered by StartedAt, newest first.
type SessionFilter struct {
	User     string
	Target   string
	Protocol string
	GrantID  string
	States   []SessionState
	// Since and Until bound StartedAt (Since <= StartedAt < Until).
	Since time.Time
	Until time.Time
	// Contains matches sessions whose Index contains the text,
	// case-insensitively.
	Contains string
	Limit    int
}

// AuditFilter selects audit records in Seq order; zero fields match
// everything.
type AuditFilter struct {
	AfterSeq int64
	Actor    string
	Target   string
	// ActionPrefix matches actions that start with it, e.g. "grant.".
	ActionPrefix string
	Since        time.Time
	Until        time.Time
	Limit        int
}

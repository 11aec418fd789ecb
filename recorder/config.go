package recorder

import (
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/recorder/keywrap"
	"github.com/custos-pam/custos/recorder/manifest"
	"github.com/custos-pam/custos/recorder/spool"
	"github.com/custos-pam/custos/recorder/store"
)

// ObjectStore is where recordings are kept: store/s3 or store/localdir.
type ObjectStore interface {
	// Kind is "s3" or "local"; it is recorded in manifests.
	Kind() string
	// ObjectLock reports whether objects carry Object Lock retention,
	// which Verify then checks.
	ObjectLock() bool
	// Check verifies the store is usable (for S3: Object Lock enabled).
	Check(ctx context.Context) error
	// Put writes a new object (version) and returns its version id.
	Put(ctx context.Context, key string, body []byte, opts store.PutOptions) (string, error)
	// Get reads one version of a key; versionID "" means the latest.
	Get(ctx context.Context, key, versionID string) (store.Object, error)
	// Versions lists every version of the keys under prefix.
	Versions(ctx context.Context, prefix string) ([]store.Version, error)
	// List lists the keys under prefix.
	List(ctx context.Context, prefix string) ([]string, error)
}

// KeyWrapper makes and unwraps per-session data keys: keywrap.Transit or
// keywrap.Local.
type KeyWrapper interface {
	NewDataKey(ctx context.Context) ([]byte, keywrap.Wrapped, error)
	Unwrap(ctx context.Context, w keywrap.Wrapped) ([]byte, error)
}

// Auditor appends to the audit log; *audit.Log implements it.
type Auditor interface {
	Append(ctx context.Context, e audit.Entry) (broker.AuditRecord, error)
}

// SessionIndex keeps the searchable session list; broker.SessionIndex
// implements it over the broker's store.
type SessionIndex interface {
	PutSession(ctx context.Context, s broker.Session) error
	GetSession(ctx context.Context, id string) (broker.Session, error)
}

// Config configures a Recorder.
type Config struct {
	// SpoolDir is the local spool. Required.
	SpoolDir string
	// Store keeps the recordings. Required.
	Store ObjectStore
	// Prefix is prepended to every object key. Default: empty.
	Prefix string
	// Signer signs manifests. Required.
	Signer *manifest.Signer
	// TrustedKeys are further public keys whose manifests Verify and Open
	// accept (keys used before a rotation). Default: only Signer's.
	TrustedKeys []ed25519.PublicKey
	// Keys wraps data keys. Required.
	Keys KeyWrapper
	// Retention is the Object Lock retention from session start; a
	// session's header policy may override it. Default: 6 years (52584h).
	Retention time.Duration
	// LegalHold puts every new object under legal hold. Default: false.
	LegalHold bool
	// SpoolMaxBytes caps the chunk bytes the spool holds (sessions not yet
	// stored, uploaded chunks of live sessions included). A fail-closed
	// session whose next event would exceed it ends (ErrSpoolFull), and
	// new fail-closed sessions are refused while less than an eighth of
	// it is free. Default: 0, no cap but the disk's.
	SpoolMaxBytes int64
	// MaxUploadOutage is how long the store may fail uploads before
	// fail-closed sessions end and new ones are refused. Default: 5m.
	MaxUploadOutage time.Duration
	// Audit receives manifest hashes, reads and fail-open uses. Default:
	// none (nothing is audited; only for tests and tools).
	Audit Auditor
	// Index receives session index updates. Default: none.
	Index SessionIndex
	// Logger logs. Default: slog.Default().
	Logger *slog.Logger
	// ChunkSize closes a chunk when its events reach this many bytes.
	// Default: 4 MiB (defaultChunkSize).
	ChunkSize int
	// ChunkInterval closes a chunk this long after its first event.
	// Default: 1s.
	ChunkInterval time.Duration
	// Uploaders is the number of concurrent uploads. Default: 4.
	Uploaders int
	// IndexInterval is how often live sessions' index entries are
	// refreshed. Default: 2s.
	IndexInterval time.Duration

	// spoolWrite replaces spool.Session.WriteChunks in tests.
	spoolWrite func(sp *spool.Session, seq uint64, bodies [][]byte) (int, error)
}

// defaultChunkSize closes a busy session's chunks. Every chunk costs a
// spool file, a sync and an object-store write whatever its size, and a
// bulk stream fills 1 MiB in a few milliseconds: 4 MiB chunks cut that
// per-chunk cost (the broker's and the object store's CPU per GiB) to a
// quarter. A quiet session's chunks still close after ChunkInterval, which
// is what bounds the data a crash can lose.
const defaultChunkSize = 4 << 20

// DefaultRetention is six years, as hours.
const DefaultRetention = 52584 * time.Hour

func (c *Config) setDefaults() error {
	if c.SpoolDir == "" || c.Store == nil || c.Signer == nil || c.Keys == nil {
		return errors.New("recorder: config needs SpoolDir, Store, Signer and Keys")
	}
	if c.Retention <= 0 {
		c.Retention = DefaultRetention
	}
	if c.MaxUploadOutage <= 0 {
		c.MaxUploadOutage = 5 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ChunkSize <= 0 {
		c.ChunkSize = defaultChunkSize
	}
	if c.ChunkInterval <= 0 {
		c.ChunkInterval = time.Second
	}
	if c.Uploaders <= 0 {
		c.Uploaders = 4
	}
	if c.IndexInterval <= 0 {
		c.IndexInterval = 2 * time.Second
	}
	return nil
}

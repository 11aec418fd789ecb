// Package store holds what the recording object stores share: put options
// carrying Object Lock retention, object and version descriptions, and the
// errors. The implementations are store/s3 (S3-compatible, Object Lock)
// and store/localdir (a directory of read-only files).
package store

import (
	"errors"
	"time"
)

// Errors the stores wrap.
var (
	// ErrNotFound: no such key or version.
	ErrNotFound = errors.New("object not found")
	// ErrExists: a write-once store already holds different bytes at the key.
	ErrExists = errors.New("object exists")
)

// PutOptions are applied to a new object.
type PutOptions struct {
	// RetainUntil is the Object Lock COMPLIANCE retention date. Zero
	// writes no retention (stores without Object Lock ignore it).
	RetainUntil time.Time
	// LegalHold puts the object under legal hold.
	LegalHold bool
	// SHA256 is the hex digest of the body, kept as object metadata.
	SHA256 string
}

// Object is a fetched object version.
type Object struct {
	Key       string
	VersionID string
	Body      []byte
	// RetentionMode is "COMPLIANCE" or "GOVERNANCE" under Object Lock,
	// empty without retention.
	RetentionMode string
	RetainUntil   time.Time
	LegalHold     bool
	// SHA256 is the digest recorded as metadata at put time, if any.
	SHA256       string
	LastModified time.Time
}

// Version is one version of a key, as listed.
type Version struct {
	Key          string
	VersionID    string
	IsLatest     bool
	DeleteMarker bool
	Size         int64
	LastModified time.Time
}

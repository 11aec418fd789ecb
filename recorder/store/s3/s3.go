// Package s3 stores recordings in an S3-compatible bucket through
// minio-go: every object is written with Object Lock retention in
// COMPLIANCE mode, optionally under legal hold, and reads address exact
// object versions. Check refuses a bucket without Object Lock.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/custos-pam/custos/recorder/store"
)

// Config locates the bucket.
type Config struct {
	// Endpoint is host:port of the S3 API.
	Endpoint string
	// Region defaults to "us-east-1".
	Region string
	Bucket string
	// AccessKey and SecretKey are the broker's credentials; they need no
	// delete permission (deploy/minio/custos-broker-policy.json).
	AccessKey, SecretKey string
	// SessionToken goes with temporary credentials. Default: none.
	SessionToken string
	// Insecure uses plain HTTP. Default: false (HTTPS).
	Insecure bool
	// Transport overrides the HTTP transport. Default: minio-go's.
	Transport http.RoundTripper
}

// Store is an S3 recording store.
type Store struct {
	c      *minio.Client
	bucket string
}

// metaSHA256 is the user-metadata key holding a body's SHA-256.
const metaSHA256 = "Sha256"

// ErrNoObjectLock is returned by Check for a bucket without Object Lock.
var ErrNoObjectLock = errors.New("bucket has no Object Lock")

// New returns a store for the bucket. It does not contact the server; call
// Check before use.
func New(cfg Config) (*Store, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, errors.New("s3 store: endpoint and bucket are required")
	}
	region := cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	c, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:     credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken),
		Secure:    !cfg.Insecure,
		Region:    region,
		Transport: cfg.Transport,
		// Checksums (required with Object Lock) travel as trailers.
		TrailingHeaders: true,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 store: %w", err)
	}
	return &Store{c: c, bucket: cfg.Bucket}, nil
}

// Kind returns "s3".
func (s *Store) Kind() string { return "s3" }

// ObjectLock reports that objects carry Object Lock retention.
func (s *Store) ObjectLock() bool { return true }

// Bucket returns the bucket name.
func (s *Store) Bucket() string { return s.bucket }

// Check verifies that the bucket exists, is versioned and has Object Lock
// enabled.
func (s *Store) Check(ctx context.Context) error {
	ok, err := s.c.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("s3 store: bucket %s: %w", s.bucket, err)
	}
	if !ok {
		return fmt.Errorf("s3 store: bucket %s does not exist", s.bucket)
	}
	enabled, _, _, _, err := s.c.GetObjectLockConfig(ctx, s.bucket)
	if err != nil || enabled != "Enabled" {
		reason := "not enabled"
		if err != nil {
			reason = err.Error()
		}
		return fmt.Errorf("s3 store: bucket %s: %w (%s): recordings must be immutable; "+
			"create the bucket with Object Lock enabled (mc mb --with-lock, or "+
			"ObjectLockEnabledForBucket on CreateBucket)", s.bucket, ErrNoObjectLock, reason)
	}
	v, err := s.c.GetBucketVersioning(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("s3 store: bucket %s: versioning: %w", s.bucket, err)
	}
	if !v.Enabled() {
		return fmt.Errorf("s3 store: bucket %s: versioning is not enabled", s.bucket)
	}
	return nil
}

// Put writes a new object version under COMPLIANCE retention and returns
// its version id.
func (s *Store) Put(ctx context.Context, key string, body []byte, opts store.PutOptions) (string, error) {
	po := minio.PutObjectOptions{
		ContentType:      "application/octet-stream",
		DisableMultipart: true,
	}
	if key != "" && strings.HasSuffix(key, ".json") {
		po.ContentType = "application/json"
	}
	if !opts.RetainUntil.IsZero() {
		po.Mode = minio.Compliance
		po.RetainUntilDate = opts.RetainUntil.UTC()
	}
	if opts.LegalHold {
		po.LegalHold = minio.LegalHoldEnabled
	}
	// Object Lock writes need an integrity header (Content-MD5 or a
	// checksum), which the server checks: CRC32C, computed in hardware,
	// guards the transfer. Tampering is what the chain hashes and the
	// signed manifest detect; the chunk's SHA-256 travels as metadata.
	po.Checksum = minio.ChecksumCRC32C
	if opts.SHA256 != "" {
		po.UserMetadata = map[string]string{metaSHA256: opts.SHA256}
	}
	info, err := s.c.PutObject(ctx, s.bucket, key, bytes.NewReader(body), int64(len(body)), po)
	if err != nil {
		return "", fmt.Errorf("s3 store: put %s: %w", key, err)
	}
	if info.VersionID == "" {
		return "", fmt.Errorf("s3 store: put %s: no version id returned: is bucket %s versioned?", key, s.bucket)
	}
	return info.VersionID, nil
}

// Get fetches one version of key (the latest when versionID is empty) with
// its retention and legal hold.
func (s *Store) Get(ctx context.Context, key, versionID string) (store.Object, error) {
	o, err := s.c.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{VersionID: versionID})
	if err != nil {
		return store.Object{}, s.wrap("get", key, err)
	}
	defer o.Close()
	body, err := io.ReadAll(o)
	if err != nil {
		return store.Object{}, s.wrap("get", key, err)
	}
	st, err := o.Stat()
	if err != nil {
		return store.Object{}, s.wrap("get", key, err)
	}
	obj := store.Object{Key: key, VersionID: st.VersionID, Body: body, LastModified: st.LastModified,
		SHA256: st.UserMetadata[metaSHA256]}
	mode, until, err := s.c.GetObjectRetention(ctx, s.bucket, key, st.VersionID)
	if err != nil && !isNoRetention(err) {
		return store.Object{}, s.wrap("get retention of", key, err)
	}
	if mode != nil {
		obj.RetentionMode = string(*mode)
	}
	if until != nil {
		obj.RetainUntil = until.UTC()
	}
	lh, err := s.c.GetObjectLegalHold(ctx, s.bucket, key, minio.GetObjectLegalHoldOptions{VersionID: st.VersionID})
	if err != nil && !isNoRetention(err) {
		return store.Object{}, s.wrap("get legal hold of", key, err)
	}
	obj.LegalHold = lh != nil && *lh == minio.LegalHoldEnabled
	return obj, nil
}

// Versions lists every version and delete marker of the keys under
// prefix: by key, newest first within a key.
func (s *Store) Versions(ctx context.Context, prefix string) ([]store.Version, error) {
	var out []store.Version
	opts := minio.ListObjectsOptions{Prefix: prefix, WithVersions: true, Recursive: true}
	for o := range s.c.ListObjects(ctx, s.bucket, opts) {
		if o.Err != nil {
			return nil, s.wrap("list versions of", prefix, o.Err)
		}
		out = append(out, store.Version{Key: o.Key, VersionID: o.VersionID, IsLatest: o.IsLatest,
			DeleteMarker: o.IsDeleteMarker, Size: o.Size, LastModified: o.LastModified})
	}
	return out, nil
}

// List returns the keys under prefix, in lexical order.
func (s *Store) List(ctx context.Context, prefix string) ([]string, error) {
	var out []string
	for o := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			return nil, s.wrap("list", prefix, o.Err)
		}
		out = append(out, o.Key)
	}
	return out, nil
}

// Client returns the underlying minio-go client, for tests and tooling.
func (s *Store) Client() *minio.Client { return s.c }

func (s *Store) wrap(op, key string, err error) error {
	var er minio.ErrorResponse
	if errors.As(err, &er) && (er.Code == "NoSuchKey" || er.Code == "NoSuchVersion" || er.StatusCode == http.StatusNotFound) {
		return fmt.Errorf("s3 store: %s %s: %w", op, key, store.ErrNotFound)
	}
	return fmt.Errorf("s3 store: %s %s: %w", op, key, err)
}

func isNoRetention(err error) bool {
	var er minio.ErrorResponse
	return errors.As(err, &er) && (er.Code == "NoSuchObjectLockConfiguration" ||
		er.Code == "ObjectLockConfigurationNotFoundError" || er.Code == "InvalidRequest")
}

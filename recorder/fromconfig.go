package recorder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	vault "github.com/hashicorp/vault/api"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/recorder/keywrap"
	"github.com/custos-pam/custos/recorder/manifest"
	"github.com/custos-pam/custos/recorder/store/localdir"
	"github.com/custos-pam/custos/recorder/store/s3"
)

// Deps are the broker services a Recorder reports to.
type Deps struct {
	// Audit is the audit log (audit.NewLog(store)). Required: reads and
	// manifests must be audited.
	Audit Auditor
	// Index is the session index (StoreIndex(store)). Default: none.
	Index SessionIndex
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// FromConfig builds a Recorder from the broker configuration (defaults
// applied): the local or S3 store, the signing key file (created on first
// start), and data-key wrapping by Vault Transit (recording.encryption
// "vault", using vc) or the local key file. It fails when the S3 bucket
// lacks Object Lock.
func FromConfig(ctx context.Context, c *config.Config, vc *vault.Client, deps Deps) (*Recorder, error) {
	rc := c.Recording
	if deps.Audit == nil {
		return nil, errors.New("recorder: an audit log is required")
	}
	signer, err := manifest.LoadSigner(rc.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("recorder: %w", err)
	}
	var keys KeyWrapper
	switch rc.Encryption {
	case "vault":
		if vc == nil {
			return nil, errors.New("recorder: recording.encryption is vault but Vault is not configured")
		}
		keys = keywrap.NewTransit(vc, c.Vault.TransitMount, rc.TransitKey)
	case "local":
		l, err := keywrap.LoadLocal(rc.LocalKey)
		if err != nil {
			return nil, fmt.Errorf("recorder: %w", err)
		}
		keys = l
	default:
		return nil, fmt.Errorf("recorder: unknown recording.encryption %q", rc.Encryption)
	}
	var st ObjectStore
	prefix := ""
	switch rc.Store {
	case "s3":
		ak, err := rc.S3.AccessKey.Resolve()
		if err != nil {
			return nil, fmt.Errorf("recorder: recording.s3.access_key: %w", err)
		}
		sk, err := rc.S3.SecretKey.Resolve()
		if err != nil {
			return nil, fmt.Errorf("recorder: recording.s3.secret_key: %w", err)
		}
		st, err = s3.New(s3.Config{Endpoint: rc.S3.Endpoint, Region: rc.S3.Region, Bucket: rc.S3.Bucket,
			AccessKey: ak, SecretKey: sk, Insecure: rc.S3.Insecure})
		if err != nil {
			return nil, fmt.Errorf("recorder: %w", err)
		}
		prefix = rc.S3.Prefix
	case "local":
		st, err = localdir.New(rc.Dir)
		if err != nil {
			return nil, fmt.Errorf("recorder: %w", err)
		}
	default:
		return nil, fmt.Errorf("recorder: unknown recording.store %q", rc.Store)
	}
	return New(ctx, Config{
		SpoolDir: rc.SpoolDir, Store: st, Prefix: prefix, Signer: signer, Keys: keys,
		Retention: rc.Retention.D(), LegalHold: rc.LegalHold, MaxUploadOutage: rc.MaxUploadOutage.D(),
		Audit: deps.Audit, Index: deps.Index, Logger: deps.Logger,
	})
}

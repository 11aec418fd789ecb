package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	vaultcreds "github.com/custos-pam/custos/broker/creds/vault"
	"github.com/custos-pam/custos/recorder"
	"github.com/custos-pam/custos/recorder/keywrap"
	"github.com/custos-pam/custos/recorder/manifest"
	"github.com/custos-pam/custos/recorder/store/localdir"
	"github.com/custos-pam/custos/recorder/store/s3"
)

// newRecorder builds the session recorder from config: the object store
// (S3 with Object Lock, or a local directory), the manifest signing key and
// the data-key wrapper (Vault Transit or a local key file). Spooled sessions
// of an earlier run are recovered by recorder.New.
func newRecorder(ctx context.Context, cfg *config.Config, vc *vaultcreds.Client, st broker.Store, auditLog *audit.Log, log *slog.Logger) (*recorder.Recorder, error) {
	rc := cfg.Recording
	var objects recorder.ObjectStore
	switch rc.Store {
	case "s3":
		ak, err := rc.S3.AccessKey.Resolve()
		if err != nil {
			return nil, fmt.Errorf("recording.s3.access_key: %w", err)
		}
		sk, err := rc.S3.SecretKey.Resolve()
		if err != nil {
			return nil, fmt.Errorf("recording.s3.secret_key: %w", err)
		}
		s, err := s3.New(s3.Config{Endpoint: rc.S3.Endpoint, Region: rc.S3.Region, Bucket: rc.S3.Bucket,
			AccessKey: ak, SecretKey: sk, Insecure: rc.S3.Insecure})
		if err != nil {
			return nil, fmt.Errorf("recording store: %w", err)
		}
		objects = s
	default:
		s, err := localdir.New(rc.Dir)
		if err != nil {
			return nil, fmt.Errorf("recording store: %w", err)
		}
		objects = s
	}
	signer, err := manifest.LoadSigner(rc.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("recording signing key: %w", err)
	}
	var keys recorder.KeyWrapper
	if rc.Encryption == "vault" {
		if vc == nil {
			return nil, fmt.Errorf("recording.encryption is vault but vault is not configured")
		}
		keys = keywrap.NewTransit(vc.API(), cfg.Vault.TransitMount, rc.TransitKey)
	} else {
		l, err := keywrap.LoadLocal(rc.LocalKey)
		if err != nil {
			return nil, fmt.Errorf("recording key file: %w", err)
		}
		keys = l
	}
	return recorder.New(ctx, recorder.Config{
		SpoolDir: rc.SpoolDir, Store: objects, Prefix: rc.S3.Prefix, Signer: signer, Keys: keys,
		Retention: rc.Retention.D(), LegalHold: rc.LegalHold, MaxUploadOutage: rc.MaxUploadOutage.D(),
		Audit: auditLog, Index: recorder.StoreIndex(st), Logger: log,
	})
}

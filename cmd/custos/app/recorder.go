package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	vault "github.com/hashicorp/vault/api"

	"github.com/custos-pam/custos/broker/breakglass"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/recorder"
	"github.com/custos-pam/custos/recorder/event"
	"github.com/custos-pam/custos/recorder/keywrap"
	"github.com/custos-pam/custos/recorder/manifest"
	"github.com/custos-pam/custos/recorder/store/localdir"
	"github.com/custos-pam/custos/recorder/store/s3"
)

// RecorderDeps are the broker services a Recorder reports to.
type RecorderDeps struct {
	// Audit is the audit log (audit.NewLog(store)). Required: reads and
	// manifests must be audited.
	Audit recorder.Auditor
	// Index is the session index (broker.SessionIndex{Store: store}).
	// Default: none.
	Index recorder.SessionIndex
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// NewRecorder builds a Recorder from the broker configuration (defaults
// applied): the local or S3 store, the signing key file (created on first
// start), and data-key wrapping by Vault Transit (recording.encryption
// "vault", using vc) or the local key file. It fails when the S3 bucket
// lacks Object Lock.
func NewRecorder(ctx context.Context, c *config.Config, vc *vault.Client, deps RecorderDeps) (*recorder.Recorder, error) {
	rc := c.Recording
	if deps.Audit == nil {
		return nil, errors.New("recorder: an audit log is required")
	}
	signer, err := manifest.LoadSigner(rc.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("recorder: %w", err)
	}
	retired, err := retiredKeys(c)
	if err != nil {
		return nil, fmt.Errorf("recorder: %w", err)
	}
	var keys recorder.KeyWrapper
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
	st, prefix, err := objectStore(rc)
	if err != nil {
		return nil, fmt.Errorf("recorder: %w", err)
	}
	return recorder.New(ctx, recorder.Config{
		SpoolDir: rc.SpoolDir, Store: st, Prefix: prefix, Signer: signer, TrustedKeys: retired, Keys: keys,
		Retention: rc.Retention.D(), LegalHold: rc.LegalHold, MaxUploadOutage: rc.MaxUploadOutage.D(),
		SpoolMaxBytes: rc.SpoolMaxBytes,
		Audit:         deps.Audit, Index: deps.Index, Logger: deps.Logger,
	})
}

// objectStore opens the object store recording.store names, and the key
// prefix within it.
func objectStore(rc config.Recording) (recorder.ObjectStore, string, error) {
	switch rc.Store {
	case "s3":
		ak, err := rc.S3.AccessKey.Resolve()
		if err != nil {
			return nil, "", fmt.Errorf("recording.s3.access_key: %w", err)
		}
		sk, err := rc.S3.SecretKey.Resolve()
		if err != nil {
			return nil, "", fmt.Errorf("recording.s3.secret_key: %w", err)
		}
		st, err := s3.New(s3.Config{Endpoint: rc.S3.Endpoint, Region: rc.S3.Region, Bucket: rc.S3.Bucket,
			AccessKey: ak, SecretKey: sk, Insecure: rc.S3.Insecure})
		if err != nil {
			return nil, "", err
		}
		return st, rc.S3.Prefix, nil
	case "local":
		st, err := localdir.New(rc.Dir)
		if err != nil {
			return nil, "", err
		}
		return st, "", nil
	default:
		return nil, "", fmt.Errorf("unknown recording.store %q", rc.Store)
	}
}

// DrillRecording records break-glass drill probes with rec: the drill
// stands where a session's grant would, its participants as approvers.
func DrillRecording(rec *recorder.Recorder) breakglass.RecordFunc {
	return func(ctx context.Context, p breakglass.ProbeSession) (breakglass.Recording, error) {
		w, err := rec.Start(ctx, event.Header{SessionID: p.SessionID, GrantID: p.DrillID, User: p.StartedBy,
			Target: p.Target, Role: p.Role, Protocol: p.Protocol, ClientAddr: "broker", Account: p.Account, Database: p.Database,
			Policy: event.Policy{Approvers: p.Participants, Reason: "break-glass drill " + p.DrillID, Ticket: p.DrillID}})
		if err != nil {
			return nil, err
		}
		return w, nil
	}
}

package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/recorder"
	"github.com/custos-pam/custos/recorder/manifest"
)

// auditCheckpoints is the broker's audit checkpointing: checkpoints of the
// chain in the recordings bucket, signed with the recording signing key.
type auditCheckpoints struct {
	cp       *audit.Checkpointer
	verifier *audit.Verifier
}

// startAuditCheckpoints starts writing checkpoints every
// audit.checkpoint_interval until bg ends; spawn runs the loop.
func startAuditCheckpoints(bg context.Context, cfg *config.Config, st broker.Store, log *slog.Logger, spawn func(func())) (*auditCheckpoints, error) {
	cps, err := AuditCheckpoints(cfg)
	if err != nil {
		return nil, err
	}
	signer, err := manifest.LoadSigner(cfg.Recording.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("audit checkpoints: %w", err)
	}
	trusted, err := verifyKeys(cfg, signer)
	if err != nil {
		return nil, fmt.Errorf("audit checkpoints: %w", err)
	}
	cp, err := audit.NewCheckpointer(audit.CheckpointerOptions{Store: st, Checkpoints: cps, Signer: signer,
		Interval: cfg.Audit.CheckpointInterval.D(), Log: log})
	if err != nil {
		return nil, err
	}
	spawn(func() { cp.Run(bg) })
	return &auditCheckpoints{cp: cp, verifier: &audit.Verifier{Store: st, Checkpoints: cps,
		Trusted: trusted, MaxAge: audit.CheckpointMaxAge(cfg.Audit.CheckpointInterval.D())}}, nil
}

// sealed wraps the recorder's audit log so that every sealed recording
// ("session.recorded") is checkpointed at once.
func (a *auditCheckpoints) sealed(l audit.Appender) audit.Appender {
	return a.cp.After(l, audit.ReasonSealed, "session.recorded")
}

// final writes the last checkpoint, after the broker's last record.
func (a *auditCheckpoints) final(ctx context.Context, log *slog.Logger) {
	if _, err := a.cp.Checkpoint(ctx, audit.ReasonShutdown); err != nil {
		log.Warn("audit checkpoint not written at shutdown", "err", err)
	}
}

// AuditCheckpoints opens the audit checkpoint store: the recordings
// object store cfg names, under its key prefix.
func AuditCheckpoints(cfg *config.Config) (*recorder.CheckpointStore, error) {
	rc := cfg.Recording
	st, prefix, err := objectStore(rc)
	if err != nil {
		return nil, fmt.Errorf("audit checkpoints: %w", err)
	}
	return recorder.NewCheckpointStore(st, prefix, rc.Retention.D(), rc.LegalHold), nil
}

// AuditVerifier returns what `custos audit verify --config` runs: the
// chain in st compared with the checkpoints in the recordings bucket,
// trusting the broker's signing key (recording.signing_key, which must
// exist: it is read, never created).
func AuditVerifier(cfg *config.Config, st broker.Store) (*audit.Verifier, error) {
	path := cfg.Recording.SigningKey
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("audit checkpoints: recording.signing_key %s does not exist: checkpoints cannot be checked without the broker's signing key", path)
	}
	signer, err := manifest.LoadSigner(path)
	if err != nil {
		return nil, fmt.Errorf("audit checkpoints: %w", err)
	}
	trusted, err := verifyKeys(cfg, signer)
	if err != nil {
		return nil, fmt.Errorf("audit checkpoints: %w", err)
	}
	cps, err := AuditCheckpoints(cfg)
	if err != nil {
		return nil, err
	}
	return &audit.Verifier{Store: st, Checkpoints: cps, Trusted: trusted,
		MaxAge: audit.CheckpointMaxAge(cfg.Audit.CheckpointInterval.D())}, nil
}

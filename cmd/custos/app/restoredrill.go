package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/backup"
	"github.com/custos-pam/custos/broker/breakglass"
	"github.com/custos-pam/custos/broker/breakglass/schedule"
	"github.com/custos-pam/custos/broker/config"
	vaultcreds "github.com/custos-pam/custos/broker/creds/vault"
	"github.com/custos-pam/custos/broker/store"
	"github.com/custos-pam/custos/recorder"
)

// RestoreDrillOptions configure a restore drill.
type RestoreDrillOptions struct {
	// Passphrase opens the backup (and seals the one taken now).
	Passphrase []byte
	// From is an existing backup directory, FromBucket the id of a backup
	// in the recordings object store. Default: take a backup of the live
	// store now.
	From       string
	FromBucket string
	// ScratchDSN is an empty PostgreSQL database to restore into.
	// Default: a SQLite file in the scratch directory.
	ScratchDSN string
	// ScratchDir holds the scratch store, data directory and spool; it
	// is removed afterwards. Default: a new temporary directory.
	ScratchDir string
	// Actor is who ran the drill, for the evidence.
	Actor string
	Log   *slog.Logger
}

// RestoreDrillReport is the evidence of one restore drill.
type RestoreDrillReport struct {
	breakglass.Drill
	Backup struct {
		ID        string      `json:"id"`
		Dir       string      `json:"dir"`
		CreatedAt time.Time   `json:"created_at"`
		Driver    string      `json:"driver"`
		Head      backup.Head `json:"audit_head"`
		TakenNow  bool        `json:"taken_now"`
	} `json:"backup"`
	ScratchDriver string `json:"scratch_driver"`
	// RTO is from the start of the restore to a restored store whose
	// chain and recordings verified: the measured recovery time.
	RTO time.Duration `json:"rto_ns"`
	// RPO is the backup's age when the drill started: what a restore
	// from it would lose.
	RPO  time.Duration    `json:"rpo_ns"`
	Rows map[string]int64 `json:"rows"`
	// Audit is the restored chain's verification against the bucket's
	// signed checkpoints.
	Audit audit.Report `json:"audit"`
	// Recordings verified, by session.
	Recordings struct {
		Listed   int      `json:"listed"`
		Verified int      `json:"verified"`
		Live     []string `json:"live_at_backup,omitempty"`
		Failed   []string `json:"failed,omitempty"`
	} `json:"recordings"`
}

// RestoreDrill restores a backup (taken now, or o.From) onto a scratch
// store and data directory, verifies the restored audit chain against the
// signed checkpoints and every recording the restored store lists
// against the bucket (read only), and files the report with the drills
// in the live store with a drill.restore audit record. A drill that ran
// but failed returns its report and no error.
func RestoreDrill(ctx context.Context, cfg *config.Config, o RestoreDrillOptions) (*RestoreDrillReport, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	start := time.Now().UTC()
	rep := &RestoreDrillReport{Rows: map[string]int64{}}
	rep.Drill = breakglass.Drill{ID: broker.NewID("drl"), Quarter: schedule.Quarter(start), StartedBy: o.Actor,
		StartedAt: start, Outcome: breakglass.DrillRunning, Participants: []string{}}
	scratch := o.ScratchDir
	if scratch == "" {
		var err error
		if scratch, err = os.MkdirTemp("", "custos-restore-drill-"); err != nil {
			return nil, fmt.Errorf("restore drill: %w", err)
		}
	} else if err := os.MkdirAll(scratch, 0o700); err != nil {
		return nil, fmt.Errorf("restore drill: %w", err)
	}
	defer os.RemoveAll(scratch)

	fail := func(step string, err error) {
		rep.Outcome, rep.Reason = breakglass.DrillFailed, step+": "+err.Error()
	}
	dir := o.From
	if o.FromBucket != "" {
		dir = filepath.Join(scratch, "backup")
		if err := rep.step("download", func() (string, error) {
			if err := DownloadBackup(ctx, cfg, o.FromBucket, dir); err != nil {
				return "", err
			}
			return fmt.Sprintf("backup %s copied from the recordings store", o.FromBucket), nil
		}); err != nil {
			fail("download", err)
			return rep, rep.save(ctx, cfg)
		}
	}
	if dir == "" {
		dir = filepath.Join(scratch, "backup")
		rep.Backup.TakenNow = true
		if err := rep.step("backup", func() (string, error) {
			m, err := Backup(ctx, cfg, dir, o.Passphrase)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("backup %s of the %s store, audit head %d", m.ID, m.Driver, m.Head.Seq), nil
		}); err != nil {
			fail("backup", err)
			return rep, rep.save(ctx, cfg)
		}
	}
	rep.Backup.Dir = dir
	restoreStart := time.Now()
	scfg := scratchConfig(cfg, scratch, o.ScratchDSN)
	rep.ScratchDriver = scfg.Store.Driver
	var res *backup.Result
	if err := rep.step("restore", func() (string, error) {
		var err error
		res, err = Restore(ctx, scfg, dir, o.Passphrase, false)
		if err != nil {
			return "", err
		}
		m := res.Manifest
		rep.Backup.ID, rep.Backup.CreatedAt, rep.Backup.Driver, rep.Backup.Head = m.ID, m.CreatedAt, m.Driver, m.Head
		rep.RPO = max(start.Sub(m.CreatedAt), 0) // a backup the drill took is no older than the drill
		rep.Rows = res.Rows
		return fmt.Sprintf("backup checked (signature, %d files, audit head %d) and restored into a scratch %s store: %s; keys %s",
			len(m.Files), m.Head.Seq, scfg.Store.Driver, rowSummary(res.Rows), strings.Join(res.KeysWritten, ", ")), nil
	}); err != nil {
		fail("restore", err)
		return rep, rep.save(ctx, cfg)
	}
	st, err := store.Open(ctx, scfg.Store)
	if err != nil {
		fail("restore", err)
		return rep, rep.save(ctx, cfg)
	}
	defer st.Close()
	if err := rep.step("audit verify", func() (string, error) { return rep.verifyAudit(ctx, scfg, st, res.Head) }); err != nil {
		fail("audit verify", err)
	}
	if err := rep.step("recordings verify", func() (string, error) { return rep.verifyRecordings(ctx, scfg, st, o.Log) }); err != nil && rep.Outcome == breakglass.DrillRunning {
		fail("recordings verify", err)
	}
	rep.RTO = time.Since(restoreStart)
	rep.TimeToAccess = rep.RTO
	rep.Probe = fmt.Sprintf("restore of backup %s (RPO %s)", rep.Backup.ID, rep.RPO.Round(time.Second))
	if rep.Outcome == breakglass.DrillRunning {
		rep.Outcome = breakglass.DrillPassed
	}
	return rep, rep.save(ctx, cfg)
}

// step runs one timed step of the drill.
func (r *RestoreDrillReport) step(name string, fn func() (string, error)) error {
	s := breakglass.Step{Name: name, StartedAt: time.Now().UTC()}
	detail, err := fn()
	s.EndedAt, s.Outcome, s.Detail = time.Now().UTC(), breakglass.StepOK, detail
	if err != nil {
		s.Outcome, s.Detail = breakglass.StepFailed, err.Error()
	}
	r.Steps = append(r.Steps, s)
	return err
}

// save files the drill in the live store, with its audit record.
func (r *RestoreDrillReport) save(ctx context.Context, cfg *config.Config) error {
	r.FinishedAt = time.Now().UTC()
	st, err := store.Open(ctx, cfg.Store)
	if err != nil {
		return fmt.Errorf("restore drill: file the report: %w", err)
	}
	defer st.Close()
	details := map[string]any{"backup": r.Backup.ID, "audit_head": r.Backup.Head.Seq, "rto_ms": r.RTO.Milliseconds(),
		"rpo_ms": r.RPO.Milliseconds(), "recordings_verified": r.Recordings.Verified, "recordings_failed": len(r.Recordings.Failed),
		"scratch_driver": r.ScratchDriver}
	return breakglass.SaveRestoreDrill(ctx, st, r.Drill, details)
}

// scratchConfig is cfg pointed at the scratch store and data directory;
// the recordings bucket and Vault stay those of cfg.
func scratchConfig(cfg *config.Config, scratch, dsn string) *config.Config {
	c := *cfg
	c.Listen.DataDir = filepath.Join(scratch, "data")
	c.Store = config.Store{Driver: "sqlite", Path: filepath.Join(scratch, "custos.db")}
	if dsn != "" {
		c.Store = config.Store{Driver: "postgres", DSN: config.Secret(dsn)}
	}
	c.Recording.SigningKey = filepath.Join(c.Listen.DataDir, "recording-signing.key")
	c.Recording.LocalKey = filepath.Join(c.Listen.DataDir, "recording-wrap.key")
	c.Recording.RetiredSigningKeys = filepath.Join(c.Listen.DataDir, "retired-signing-keys")
	c.Recording.SpoolDir = filepath.Join(scratch, "spool")
	return &c
}

// verifyAudit checks the restored chain and compares it with the signed
// checkpoints in the bucket, trusting the restored signing key.
func (r *RestoreDrillReport) verifyAudit(ctx context.Context, scfg *config.Config, st broker.Store, head backup.Head) (string, error) {
	v, err := AuditVerifier(scfg, st)
	if err != nil {
		return "", err
	}
	v.MaxAge = 0 // how often the live broker checkpoints is not the restore's concern
	v.Through = head.Seq
	rep, err := v.Verify(ctx)
	r.Audit = rep
	if err != nil {
		return "", err
	}
	if !rep.OK {
		msg := rep.Problem
		if msg == "" && rep.Checkpoints != nil && len(rep.Checkpoints.Problems) > 0 {
			msg = rep.Checkpoints.Problems[0].String()
		}
		return "", fmt.Errorf("the restored audit chain did not verify: %s", msg)
	}
	if int64(rep.Records) != head.Seq || rep.Head != head.Hash {
		return "", fmt.Errorf("the restored chain ends at record %d, the backup's head is %d", rep.Records, head.Seq)
	}
	detail := fmt.Sprintf("%d records intact up to the backup's head %.16s", rep.Records, rep.Head)
	if cp := rep.Checkpoints; cp != nil {
		detail += fmt.Sprintf("; %d checkpoints, %d signed by the restored key", cp.Found, cp.Verified)
		if cp.Newest != nil && cp.Newest.Seq > head.Seq {
			detail += fmt.Sprintf("; records %d to %d came after the backup", head.Seq+1, cp.Newest.Seq)
		}
	}
	return detail, nil
}

// verifyRecordings verifies, against the bucket, every recording the
// restored store lists, with the restored keys.
func (r *RestoreDrillReport) verifyRecordings(ctx context.Context, scfg *config.Config, st broker.Store, log *slog.Logger) (string, error) {
	var sessions []broker.Session
	if err := st.View(ctx, func(tx broker.Tx) error {
		var err error
		sessions, err = tx.ListSessions(broker.SessionFilter{})
		return err
	}); err != nil {
		return "", err
	}
	r.Recordings.Listed = len(sessions)
	rec, stop, err := drillRecorder(ctx, scfg, st, log)
	if err != nil {
		return "", err
	}
	defer stop()
	for _, s := range sessions {
		v, err := rec.Verify(ctx, s.ID)
		switch {
		case err != nil:
			r.Recordings.Failed = append(r.Recordings.Failed, s.ID+": "+err.Error())
		case v.Intact:
			r.Recordings.Verified++
		case s.State == broker.SessionLive:
			r.Recordings.Live = append(r.Recordings.Live, s.ID)
		default:
			r.Recordings.Failed = append(r.Recordings.Failed, s.ID+": "+v.Verdict)
		}
	}
	detail := fmt.Sprintf("%d of %d recordings intact", r.Recordings.Verified, r.Recordings.Listed)
	if n := len(r.Recordings.Live); n > 0 {
		detail += fmt.Sprintf("; %d live at the backup and not sealed yet", n)
	}
	if n := len(r.Recordings.Failed); n > 0 {
		return "", fmt.Errorf("%s; %d failed, the first: %s", detail, n, r.Recordings.Failed[0])
	}
	return detail, nil
}

// drillRecorder opens the recordings bucket with the restored keys, for
// reading; Vault Transit when recordings are wrapped by Vault.
func drillRecorder(ctx context.Context, scfg *config.Config, st broker.Store, log *slog.Logger) (*recorder.Recorder, func(), error) {
	vctx, cancel := context.WithCancel(ctx)
	stop := cancel
	var vc *vaultcreds.Client
	if scfg.Recording.Encryption == "vault" {
		var err error
		if vc, err = vaultcreds.New(scfg.Vault, log); err != nil {
			cancel()
			return nil, nil, err
		}
		done := make(chan struct{})
		go func() { defer close(done); vc.Run(vctx) }()
		stop = func() { cancel(); <-done }
		deadline := time.Now().Add(30 * time.Second)
		for vc.Health(ctx) != nil {
			if time.Now().After(deadline) {
				stop()
				return nil, nil, errors.New("vault: not reachable to unwrap recording keys")
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	var api *vaultapi.Client
	if vc != nil {
		api = vc.API()
	}
	rec, err := NewRecorder(ctx, scfg, api, RecorderDeps{Audit: audit.NewLog(st), Index: broker.SessionIndex{Store: st}, Logger: log})
	if err != nil {
		stop()
		return nil, nil, err
	}
	return rec, func() { _ = rec.Close(); stop() }, nil
}

func rowSummary(rows map[string]int64) string {
	var parts []string
	for _, t := range backup.Tables {
		parts = append(parts, fmt.Sprintf("%d %s", rows[t], t))
	}
	return strings.Join(parts, ", ")
}

// WriteText writes the report for people.
func (r *RestoreDrillReport) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "restore drill %s: %s\n", r.ID, strings.ToUpper(r.Outcome))
	if r.Reason != "" {
		fmt.Fprintf(w, "  reason: %s\n", r.Reason)
	}
	fmt.Fprintf(w, "  started %s by %s\n", r.StartedAt.Format(time.RFC3339), r.StartedBy)
	if r.Backup.ID != "" {
		fmt.Fprintf(w, "  backup %s of the %s store, taken %s (%s), audit head record %d %.16s\n", r.Backup.ID, r.Backup.Driver,
			r.Backup.CreatedAt.Format(time.RFC3339), map[bool]string{true: "by this drill", false: "given"}[r.Backup.TakenNow],
			r.Backup.Head.Seq, r.Backup.Head.Hash)
		fmt.Fprintf(w, "  RPO (backup age at drill start): %s\n", r.RPO.Round(time.Millisecond))
	}
	if r.RTO > 0 {
		fmt.Fprintf(w, "  RTO (restore to a verified store): %s\n", r.RTO.Round(time.Millisecond))
	}
	if len(r.Rows) > 0 {
		fmt.Fprintf(w, "  restored into a scratch %s store: %s\n", r.ScratchDriver, rowSummary(r.Rows))
	}
	fmt.Fprintf(w, "  audit chain: %d records, ok=%v", r.Audit.Records, r.Audit.OK)
	if cp := r.Audit.Checkpoints; cp != nil {
		fmt.Fprintf(w, "; checkpoints %d found, %d verified", cp.Found, cp.Verified)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  recordings: %d listed, %d verified intact, %d failed, %d live at backup\n",
		r.Recordings.Listed, r.Recordings.Verified, len(r.Recordings.Failed), len(r.Recordings.Live))
	for _, f := range r.Recordings.Failed {
		fmt.Fprintf(w, "    failed: %s\n", f)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  STEP\tDURATION\tOUTCOME\tDETAIL")
	for _, s := range r.Steps {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", s.Name, s.Duration().Round(time.Millisecond), s.Outcome, s.Detail)
	}
	return tw.Flush()
}

package cli

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/custos-pam/custos/broker/backup"
	"github.com/custos-pam/custos/broker/breakglass"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/cmd/custos/app"
)

// passphraseFrom reads the backup passphrase from the environment
// variable named; it is never a flag value, so it stays out of process
// listings and shell history.
func passphraseFrom(name string) ([]byte, error) {
	if name == "" {
		return nil, &exitError{code: exitUsage, msg: "--passphrase-env NAME is required: the variable holding the backup passphrase"}
	}
	v := os.Getenv(name)
	if len(v) < backup.MinPassphrase {
		return nil, &exitError{code: exitUsage, msg: fmt.Sprintf("$%s must hold a passphrase of at least %d characters", name, backup.MinPassphrase)}
	}
	return []byte(v), nil
}

// backupError maps a refused restore to its exit code.
func backupError(err error) error {
	switch {
	case errors.Is(err, backup.ErrTampered), errors.Is(err, backup.ErrPassphrase):
		return &exitError{code: exitTampered, msg: err.Error()}
	case errors.Is(err, backup.ErrNotEmpty):
		return &exitError{code: exitRefused, msg: err.Error() + " (restore into a fresh store, or with --force move an existing SQLite file aside)"}
	}
	return err
}

func newBackupCmd(g *globals) *cobra.Command {
	var cfgPath, passEnv string
	var toBucket bool
	var retain time.Duration
	cmd := &cobra.Command{
		Use:   "backup [DIR]",
		Short: "Write a signed backup of the state store, audit head and keys (keys sealed under a passphrase)",
		Long: `Reads the whole state store in one read transaction (the broker may be running) and
writes it to DIR, a new directory, as one JSONL file per table, with the audit chain
head it reaches and the broker's key files sealed under the passphrase (Argon2id,
XChaCha20-Poly1305). manifest.json lists every file's SHA-256 and is signed with the
recording signing key. Recordings are not copied: they stay in the Object Lock bucket.
With --to-bucket the backup is also copied into the recordings object store under
backups/<id>/, each object under Object Lock retention for --retain.`,
		Example: `  CUSTOS_BACKUP_PASSPHRASE=... custos backup /var/backups/custos/$(date -u +%Y%m%dT%H%M%SZ) \
      --config /etc/custos/custos.yaml --passphrase-env CUSTOS_BACKUP_PASSPHRASE
  custos backup --to-bucket --retain 720h --config /etc/custos/custos.yaml --passphrase-env CUSTOS_BACKUP_PASSPHRASE`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && !toBucket {
				return &exitError{code: exitUsage, msg: "backup: give a directory, --to-bucket, or both"}
			}
			pass, err := passphraseFrom(passEnv)
			if err != nil {
				return err
			}
			cfg, err := loadBrokerConfig(cfgPath)
			if err != nil {
				return err
			}
			dir := ""
			if len(args) == 1 {
				dir = args[0]
			} else {
				tmp, err := os.MkdirTemp("", "custos-backup-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(tmp)
				dir = filepath.Join(tmp, "backup")
			}
			m, err := app.Backup(cmd.Context(), cfg, dir, pass)
			if err != nil {
				return err
			}
			where := dir
			if toBucket {
				loc, err := app.UploadBackup(cmd.Context(), cfg, dir, m, retain)
				if err != nil {
					return err
				}
				if len(args) == 0 {
					where = "the recordings store at " + loc
				} else {
					where += " and the recordings store at " + loc
				}
			}
			if j, err := g.jsonOutput(); err != nil {
				return err
			} else if j {
				return g.printJSON(m)
			}
			var rows []string
			for _, t := range backup.Tables {
				for _, f := range m.Files {
					if f.Name == backup.TableFile(t) {
						rows = append(rows, fmt.Sprintf("%d %s", f.Rows, t))
					}
				}
			}
			fmt.Fprintf(g.stdout, "backup %s written to %s\n  snapshot %s of the %s store: %s\n  audit head: record %d, hash %s\n  keys (sealed): %s; signed by %s\n",
				m.ID, where, m.CreatedAt.Format(time.RFC3339Nano), m.Driver, strings.Join(rows, ", "),
				m.Head.Seq, m.Head.Hash, strings.Join(m.Keys, ", "), m.SignedBy)
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", os.Getenv("CUSTOS_CONFIG"), "broker config file naming the store and key files (default $CUSTOS_CONFIG)")
	cmd.Flags().StringVar(&passEnv, "passphrase-env", "", "environment variable holding the passphrase that seals the keys (required)")
	cmd.Flags().BoolVar(&toBucket, "to-bucket", false, "also copy the backup into the recordings object store (backups/<id>/)")
	cmd.Flags().DurationVar(&retain, "retain", 30*24*time.Hour, "Object Lock retention of a backup copied with --to-bucket")
	return cmd
}

func newRestoreCmd(g *globals) *cobra.Command {
	var cfgPath, passEnv, fromBucket string
	var force, checkOnly bool
	cmd := &cobra.Command{
		Use:   "restore [DIR]",
		Short: "Bring a fresh broker up from a backup: check it all, then restore the store and keys",
		Long: `Checks the backup in DIR completely before writing anything: the passphrase opens the
sealed keys, the signing key inside verifies the manifest's signature, every file must
match its SHA-256, and the audit rows must form an intact chain ending exactly at the
recorded head. Then restores the rows into the (empty) store the config names, in one
transaction, writes the key files into its data directory, and verifies the restored
chain. Stop the broker first; start it after. Exit 6 when the backup was altered or the
passphrase is wrong, 3 when the store is not empty. --from-bucket ID restores a backup
copied with custos backup --to-bucket from the recordings object store the config names.`,
		Example: `  custos restore /var/backups/custos/20261204T000000Z --config /etc/custos/custos.yaml \
      --passphrase-env CUSTOS_BACKUP_PASSPHRASE
  custos restore DIR --check --passphrase-env CUSTOS_BACKUP_PASSPHRASE   # check only, write nothing
  custos restore --from-bucket bak_5x2kq7m3abcdefgh --config /etc/custos/custos.yaml --passphrase-env CUSTOS_BACKUP_PASSPHRASE`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 1) == (fromBucket != "") {
				return &exitError{code: exitUsage, msg: "restore: give a backup directory or --from-bucket ID"}
			}
			pass, err := passphraseFrom(passEnv)
			if err != nil {
				return err
			}
			var dir string
			if fromBucket != "" {
				cfg, err := loadBrokerConfig(cfgPath)
				if err != nil {
					return err
				}
				tmp, err := os.MkdirTemp("", "custos-restore-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(tmp)
				dir = filepath.Join(tmp, "backup")
				if err := app.DownloadBackup(cmd.Context(), cfg, fromBucket, dir); err != nil {
					return err
				}
			} else {
				dir = args[0]
			}
			if checkOnly {
				c, err := backup.Check(dir, pass)
				if err != nil {
					return backupError(err)
				}
				defer c.Close()
				if j, _ := g.jsonOutput(); j {
					return g.printJSON(c.Manifest)
				}
				fmt.Fprintf(g.stdout, "backup %s intact: signed by %s, %d files, audit head record %d\n",
					c.Manifest.ID, c.Manifest.SignedBy, len(c.Manifest.Files), c.Manifest.Head.Seq)
				return nil
			}
			cfg, err := loadBrokerConfig(cfgPath)
			if err != nil {
				return err
			}
			res, err := app.Restore(cmd.Context(), cfg, dir, pass, force)
			if err != nil {
				return backupError(err)
			}
			if j, err := g.jsonOutput(); err != nil {
				return err
			} else if j {
				return g.printJSON(res)
			}
			fmt.Fprintf(g.stdout, "restored backup %s (taken %s from a %s store) into the %s store\n",
				res.Manifest.ID, res.Manifest.CreatedAt.Format(time.RFC3339), res.Manifest.Driver, orDefault(cfg.Store.Driver, "sqlite"))
			for _, t := range backup.Tables {
				fmt.Fprintf(g.stdout, "  %-9s %d\n", t, res.Rows[t])
			}
			fmt.Fprintf(g.stdout, "  audit chain verified up to the backup's head: record %d, hash %s\n", res.Head.Seq, res.Head.Hash)
			fmt.Fprintf(g.stdout, "  keys written: %s\n", strings.Join(res.KeysWritten, ", "))
			for _, p := range res.MovedAside {
				fmt.Fprintf(g.stdout, "  moved aside: %s\n", p)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", os.Getenv("CUSTOS_CONFIG"), "config of the broker to restore into, its store and data_dir (default $CUSTOS_CONFIG)")
	cmd.Flags().StringVar(&passEnv, "passphrase-env", "", "environment variable holding the backup's passphrase (required)")
	cmd.Flags().BoolVar(&force, "force", false, "move an existing SQLite database and differing key files aside instead of refusing")
	cmd.Flags().BoolVar(&checkOnly, "check", false, "only check the backup; write nothing")
	cmd.Flags().StringVar(&fromBucket, "from-bucket", "", "restore the backup with this id from the recordings object store")
	return cmd
}

// loadBrokerConfig loads the broker config these commands work on.
func loadBrokerConfig(path string) (*config.Config, error) {
	if path == "" {
		return nil, &exitError{code: exitUsage, msg: "--config is required (or $CUSTOS_CONFIG): the broker's config file"}
	}
	return config.Load(path)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func newDrillRestoreCmd(g *globals) *cobra.Command {
	var cfgPath, passEnv, from, fromBucket, scratchDSN, scratchDir string
	cmd := &cobra.Command{
		Use:   "restore",
		Short: "Run a restore drill: back up, restore onto a scratch store, verify the audit chain and every recording",
		Long: `Takes a backup now (or uses --from), restores it onto a scratch store (a temporary SQLite
file, or the empty PostgreSQL database --scratch-dsn names) and a scratch data directory,
verifies the restored audit chain against the signed checkpoints in the recordings bucket
and every recording the restored store lists against the bucket (read only), and reports
the measured RTO (restore to verified) and RPO (the backup's age). The report is filed
with the drills (custos drill status, custos drill report) under the account (restore),
with a drill.restore audit record. Exit 1 when the drill failed.`,
		Example: `  custos drill restore --config /etc/custos/custos.yaml --passphrase-env CUSTOS_BACKUP_PASSPHRASE
  custos drill restore --config custos.yaml --passphrase-env P --from /var/backups/custos/20261204T000000Z \
      --scratch-dsn env:SCRATCH_DSN -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			pass, err := passphraseFrom(passEnv)
			if err != nil {
				return err
			}
			cfg, err := loadBrokerConfig(cfgPath)
			if err != nil {
				return err
			}
			dsn := ""
			if scratchDSN != "" {
				if dsn, err = config.Secret(scratchDSN).Resolve(); err != nil {
					return fmt.Errorf("drill restore: --scratch-dsn: %w", err)
				}
			}
			actor := "operator"
			if u, err := user.Current(); err == nil {
				actor = "os:" + u.Username
			}
			if from != "" && fromBucket != "" {
				return &exitError{code: exitUsage, msg: "drill restore: --from and --from-bucket exclude each other"}
			}
			rep, err := app.RestoreDrill(cmd.Context(), cfg, app.RestoreDrillOptions{Passphrase: pass, From: from, FromBucket: fromBucket,
				ScratchDSN: dsn, ScratchDir: scratchDir, Actor: actor})
			if rep == nil {
				return err
			}
			if j, jerr := g.jsonOutput(); jerr != nil {
				return jerr
			} else if j {
				if perr := g.printJSON(rep); perr != nil {
					return perr
				}
			} else if werr := rep.WriteText(g.stdout); werr != nil {
				return werr
			}
			if err != nil {
				return fmt.Errorf("drill restore: %w", err)
			}
			if rep.Outcome != breakglass.DrillPassed {
				return &exitError{code: exitFailure, msg: "restore drill failed: " + rep.Reason}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", os.Getenv("CUSTOS_CONFIG"), "config of the broker whose backup is drilled (default $CUSTOS_CONFIG)")
	cmd.Flags().StringVar(&passEnv, "passphrase-env", "", "environment variable holding the backup passphrase (required)")
	cmd.Flags().StringVar(&from, "from", "", "drill this existing backup directory instead of taking one now")
	cmd.Flags().StringVar(&fromBucket, "from-bucket", "", "drill the backup with this id in the recordings object store (custos backup --to-bucket)")
	cmd.Flags().StringVar(&scratchDSN, "scratch-dsn", "", "an empty PostgreSQL database to restore into, as env:NAME or file:/path (default: a temporary SQLite file)")
	cmd.Flags().StringVar(&scratchDir, "scratch-dir", "", "directory for the scratch store, keys and spool, removed afterwards (default: a temporary one)")
	return cmd
}

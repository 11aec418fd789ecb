package cli

import (
	"fmt"
	"os/user"

	"github.com/spf13/cobra"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/store"
	"github.com/custos-pam/custos/cmd/custos/app"
)

// actionSigningKeyRotate is the audit action of a signing key rotation.
const actionSigningKeyRotate = "recording.signing_key.rotate"

func newKeysCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Rotate the broker's own keys"}
	cmd.AddCommand(newKeysRotateSigningCmd(g))
	return cmd
}

func newKeysRotateSigningCmd(g *globals) *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "rotate-signing",
		Short: "Retire the recording signing key and create a new one; old recordings keep verifying",
		Long: `Writes the public half of the current recording signing key (recording.signing_key) to
recording.retired_signing_keys as <key id>.pub, then replaces the key file with a new Ed25519 key.
Recordings and audit checkpoints signed with a retired key still verify; new ones are signed
with the new key once the broker restarts. The rotation is recorded in the audit log
(` + actionSigningKeyRotate + `) with both key IDs. Run it as the service user with the broker
stopped, then copy the key file and the retired keys directory to every other replica before
restarting them.`,
		Example: `  sudo -u custos custos keys rotate-signing --config /etc/custos/custos.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cfgPath == "" {
				return &exitError{code: exitUsage, msg: "keys rotate-signing: --config is required"}
			}
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			// The store is opened first: a rotation that cannot be
			// audited does not start.
			st, err := store.Open(cmd.Context(), cfg.Store)
			if err != nil {
				return fmt.Errorf("keys rotate-signing: %w", err)
			}
			defer st.Close()
			rot, err := app.RotateSigningKey(cfg)
			if err != nil {
				return fmt.Errorf("keys rotate-signing: %w", err)
			}
			actor := "operator"
			if u, err := user.Current(); err == nil {
				actor = "os:" + u.Username
			}
			if _, err := audit.NewLog(st).Append(cmd.Context(), audit.Entry{Actor: actor, Action: actionSigningKeyRotate,
				Outcome: broker.OutcomeSuccess, Details: map[string]any{"old_key": rot.Old, "new_key": rot.New}}); err != nil {
				return fmt.Errorf("keys rotate-signing: the key was rotated (%s → %s) but the audit record failed: %w", rot.Old, rot.New, err)
			}
			fmt.Fprintf(g.stdout, "recording signing key rotated: %s → %s\n", rot.Old, rot.New)
			fmt.Fprintf(g.stdout, "retired key kept for verification: %s\n", rot.Retired)
			fmt.Fprintf(g.stdout, "copy %s and %s to every replica, then restart each\n", cfg.Recording.SigningKey, cfg.Recording.RetiredSigningKeys)
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "the broker's config file (required)")
	return cmd
}

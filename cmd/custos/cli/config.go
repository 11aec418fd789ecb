package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/kri"
)

func newConfigCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Work with custos.yaml",
	}
	cmd.AddCommand(&cobra.Command{
		Use:     "check FILE",
		Short:   "Validate a config file and report every problem with its YAML path",
		Example: "  custos config check /etc/custos/custos.yaml",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := config.Load(args[0])
			if err != nil {
				return &exitError{code: 1, msg: err.Error()}
			}
			// Limits name indicators the broker computes.
			if err := kri.CheckLimits(c.Indicators.Limits); err != nil {
				return &exitError{code: 1, msg: "invalid config:\n  " + strings.ReplaceAll(err.Error(), "\n", "\n  ")}
			}
			fmt.Fprintf(g.stdout, "%s: ok (%d users, %d groups, %d targets)\n", args[0], len(c.Users), len(c.Groups), len(c.Targets))
			return nil
		},
	})
	return cmd
}

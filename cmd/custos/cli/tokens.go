package cli

import (
	"fmt"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func newTokensCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "tokens",
		Short:   "List your API and connection tokens (never their secrets)",
		Example: "  custos tokens\n  custos tokens revoke tok_abc123",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := g.jsonOutput()
			if err != nil {
				return err
			}
			var toks []struct {
				ID        string    `json:"id"`
				Kind      string    `json:"kind"`
				Target    string    `json:"target"`
				CreatedAt time.Time `json:"created_at"`
				ExpiresAt time.Time `json:"expires_at"`
				Source    string    `json:"source"`
			}
			if err := g.call(cmd.Context(), "GET", "/api/v1/tokens", nil, &toks); err != nil {
				return fmt.Errorf("tokens: %w", err)
			}
			if asJSON {
				return g.printJSON(toks)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tTARGET\tCREATED\tEXPIRES\tSOURCE")
			for _, t := range toks {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Kind, t.Target, t.CreatedAt.Local().Format(time.DateTime),
					t.ExpiresAt.Local().Format(time.DateTime), t.Source)
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:     "revoke ID",
		Short:   "Revoke one of your tokens",
		Example: "  custos tokens revoke tok_abc123",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.call(cmd.Context(), "DELETE", "/api/v1/tokens/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return fmt.Errorf("tokens revoke: %w", err)
			}
			fmt.Fprintf(g.stdout, "token %s revoked\n", args[0])
			return nil
		},
	})
	return cmd
}

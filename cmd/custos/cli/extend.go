package cli

import (
	"fmt"
	"net/url"
	"time"

	"github.com/spf13/cobra"
)

func newExtendCmd(g *globals) *cobra.Command {
	var dur, reason, ticket string
	var wait bool
	cmd := &cobra.Command{
		Use:   "extend GRANT",
		Short: "Ask for more time on your active grant; approvers decide it like a request",
		Example: `  custos extend gr_abc123 --for 30m --reason "INC-123 migration still running"
  custos extend gr_abc123 --for 15m --wait`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := g.jsonOutput()
			if err != nil {
				return err
			}
			var r request
			body := map[string]string{"duration": dur, "reason": reason, "ticket": ticket}
			if err := g.call(cmd.Context(), "POST", "/api/v1/grants/"+url.PathEscape(args[0])+"/extend", body, &r); err != nil {
				return fmt.Errorf("extend: %w", err)
			}
			if !wait {
				if asJSON {
					return g.printJSON(r)
				}
				fmt.Fprintf(g.stdout, "extension %s of grant %s (+%s) is pending: needs %d approval(s), expires %s\n",
					r.ID, r.Extends, r.Duration, r.Required, r.ExpiresAt.Local().Format(time.RFC1123))
				return nil
			}
			if !asJSON {
				fmt.Fprintf(g.stderr, "extension %s is pending; waiting for approval until %s\n", r.ID, r.ExpiresAt.Local().Format(time.Kitchen))
			}
			return g.waitDecision(cmd.Context(), r.ID, asJSON)
		},
	}
	cmd.Flags().StringVar(&dur, "for", "", "how much more time, e.g. 30m (required)")
	cmd.Flags().StringVar(&reason, "reason", "", "why you need more time")
	cmd.Flags().StringVar(&ticket, "ticket", "", "ticket or incident ID (default: the grant's)")
	cmd.Flags().BoolVar(&wait, "wait", false, "block until the extension is decided and print the grant")
	_ = cmd.MarkFlagRequired("for")
	return cmd
}

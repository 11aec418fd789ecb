package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// userRow is one entry of GET /api/v1/users.
type userRow struct {
	Name         string     `json:"name"`
	Sources      []string   `json:"sources"`
	Groups       []string   `json:"groups"`
	Enabled      bool       `json:"enabled"`
	Factors      []string   `json:"factors"`
	SecondFactor bool       `json:"second_factor"`
	LastActivity *time.Time `json:"last_activity,omitempty"`
}

func newUsersCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "users",
		Short: "List every user: where they come from, groups, factors, status and last activity (security admins)",
		Long: "List every user the broker knows: config users (also disabled ones), users who signed in\n" +
			"through single sign-on, and users provisioned by SCIM (also deactivated ones), with their\n" +
			"policy groups, their factors (password, totp, sso, sso+mfa, passkey), whether they are\n" +
			"enabled, and their last sign-in or token use (recorded at most once a minute).",
		Example: "  custos users\n  custos users -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := g.jsonOutput()
			if err != nil {
				return err
			}
			var users []userRow
			if err := g.call(cmd.Context(), "GET", "/api/v1/users", nil, &users); err != nil {
				return fmt.Errorf("users: %w", err)
			}
			if asJSON {
				return g.printJSON(users)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSOURCE\tSTATUS\tGROUPS\tFACTORS\t2FA\tLAST ACTIVITY")
			for _, u := range users {
				status, second, last := "enabled", "no", "-"
				if !u.Enabled {
					status = "disabled"
				}
				if u.SecondFactor {
					second = "yes"
				}
				if u.LastActivity != nil {
					last = u.LastActivity.Local().Format(time.DateTime)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", u.Name, list(u.Sources), status, list(u.Groups), list(u.Factors), second, last)
			}
			return tw.Flush()
		},
	}
}

func list(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

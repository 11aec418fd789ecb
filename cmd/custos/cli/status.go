package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// statusView is what custos status shows.
type statusView struct {
	Broker     string        `json:"broker"`
	User       string        `json:"user"`
	TokenID    string        `json:"token_id"`
	ExpiresAt  time.Time     `json:"expires_at"`
	AuthMethod string        `json:"auth_method"`
	AuthTime   time.Time     `json:"auth_time,omitzero"`
	Groups     []string      `json:"groups"`
	Grants     []statusGrant `json:"grants"`
}

type statusGrant struct {
	ID     string    `json:"id"`
	User   string    `json:"user"`
	Target string    `json:"target"`
	Role   string    `json:"role"`
	EndsAt time.Time `json:"ends_at"`
}

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show who you are signed in as, how and until when, and your active grants",
		Example: `  custos status
  custos status -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var who struct {
				User       string    `json:"user"`
				TokenID    string    `json:"token_id"`
				ExpiresAt  time.Time `json:"expires_at"`
				AuthMethod string    `json:"auth_method"`
				AuthTime   time.Time `json:"auth_time"`
				Groups     []string  `json:"groups"`
			}
			if err := g.call(cmd.Context(), "GET", "/api/v1/whoami", nil, &who); err != nil {
				return err
			}
			var grants []statusGrant
			if err := g.call(cmd.Context(), "GET", "/api/v1/grants?active=true&user="+who.User, nil, &grants); err != nil {
				return err
			}
			v := statusView{Broker: g.url, User: who.User, TokenID: who.TokenID, ExpiresAt: who.ExpiresAt,
				AuthMethod: who.AuthMethod, AuthTime: who.AuthTime, Groups: who.Groups, Grants: []statusGrant{}}
			for _, gr := range grants {
				if gr.User == who.User {
					v.Grants = append(v.Grants, gr)
				}
			}
			if j, err := g.jsonOutput(); err != nil || j {
				if err != nil {
					return err
				}
				return g.printJSON(v)
			}
			method := v.AuthMethod
			if method == "" {
				method = "unknown"
			}
			fmt.Fprintf(g.stdout, "broker:   %s\nuser:     %s\n", v.Broker, v.User)
			if len(v.Groups) > 0 {
				fmt.Fprintf(g.stdout, "groups:   %s\n", strings.Join(v.Groups, ", "))
			}
			fmt.Fprintf(g.stdout, "signed in: %s", method)
			if !v.AuthTime.IsZero() {
				fmt.Fprintf(g.stdout, " at %s", v.AuthTime.Local().Format(time.RFC1123))
			}
			fmt.Fprintf(g.stdout, "\ntoken:    %s, expires %s (in %s)\n", v.TokenID, v.ExpiresAt.Local().Format(time.RFC1123),
				time.Until(v.ExpiresAt).Round(time.Minute))
			if len(v.Grants) == 0 {
				fmt.Fprintln(g.stdout, "grants:   none active")
			}
			for _, gr := range v.Grants {
				fmt.Fprintf(g.stdout, "grant:    %s %s/%s until %s\n", gr.ID, gr.Target, gr.Role, gr.EndsAt.Local().Format(time.RFC1123))
			}
			return nil
		},
	}
}

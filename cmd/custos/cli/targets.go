package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// targetInfo is one entry of GET /api/v1/targets: a target with the roles
// the caller may request.
type targetInfo struct {
	Name        string `json:"name"`
	Kind        string `json:"kind"`
	Description string `json:"description,omitempty"`
	Roles       []struct {
		Name           string `json:"name"`
		MaxDuration    string `json:"max_duration,omitempty"`
		Approvals      int    `json:"approvals"`
		ReasonRequired bool   `json:"reason_required"`
		TicketRequired bool   `json:"ticket_required"`
	} `json:"roles"`
}

func (g *globals) listTargets(ctx context.Context) ([]targetInfo, error) {
	var ts []targetInfo
	if err := g.call(ctx, "GET", "/api/v1/targets", nil, &ts); err != nil {
		return nil, fmt.Errorf("targets: %w", err)
	}
	return ts, nil
}

func newTargetsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "targets",
		Short: "List the targets and roles you may request",
		Example: `  custos targets
  custos targets -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := g.jsonOutput()
			if err != nil {
				return err
			}
			ts, err := g.listTargets(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return g.printJSON(ts)
			}
			if len(ts) == 0 {
				fmt.Fprintln(g.stdout, "no targets you may request; ask an administrator to add you to a role's requesters")
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TARGET\tKIND\tROLE\tAPPROVALS\tMAX DURATION\tNEEDS")
			for _, t := range ts {
				for _, r := range t.Roles {
					var needs []string
					if r.ReasonRequired {
						needs = append(needs, "reason")
					}
					if r.TicketRequired {
						needs = append(needs, "ticket")
					}
					if len(needs) == 0 {
						needs = []string{"-"}
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", t.Name, t.Kind, r.Name, r.Approvals, r.MaxDuration, strings.Join(needs, ","))
				}
			}
			return tw.Flush()
		},
	}
}

package cli

import (
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// hold is a held statement as the API shows it.
type hold struct {
	ID           string    `json:"id"`
	Session      string    `json:"session"`
	User         string    `json:"user"`
	Target       string    `json:"target"`
	Role         string    `json:"role"`
	Database     string    `json:"database"`
	Text         string    `json:"text"`
	Params       int       `json:"params"`
	Digest       string    `json:"digest"`
	Rules        []string  `json:"rules"`
	Estimate     int64     `json:"estimate"`
	EstimateNote string    `json:"estimate_note"`
	State        string    `json:"state"`
	Created      time.Time `json:"created"`
	Expires      time.Time `json:"expires"`
	DecidedBy    string    `json:"decided_by"`
	Reason       string    `json:"reason"`
	CanDecide    bool      `json:"can_decide"`
}

func (h hold) estimate() string {
	if h.Estimate < 0 {
		return "unknown"
	}
	return fmt.Sprintf("~%d rows", h.Estimate)
}

func newHoldsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "holds",
		Short: "List statements the PostgreSQL guardrails hold for approval",
		Example: `  custos holds
  custos holds show hold-1a2b3c4d5e6f7a8b
  custos holds approve hold-1a2b3c4d5e6f7a8b --reason "INC-123 cleanup agreed"
  custos holds deny hold-1a2b3c4d5e6f7a8b --reason "use a WHERE clause"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := g.jsonOutput()
			if err != nil {
				return err
			}
			var hs []hold
			if err := g.call(cmd.Context(), "GET", "/api/v1/holds", nil, &hs); err != nil {
				return fmt.Errorf("holds: %w", err)
			}
			if asJSON {
				return g.printJSON(hs)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tUSER\tTARGET/ROLE\tESTIMATE\tRULES\tSTATEMENT")
			for _, h := range hs {
				text := strings.Join(strings.Fields(h.Text), " ")
				if len(text) > 60 {
					text = text[:57] + "..."
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s/%s\t%s\t%s\t%s\n", h.ID, h.State, h.User, h.Target, h.Role, h.estimate(),
					strings.Join(h.Rules, ","), text)
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:     "show ID",
		Short:   "Show a held statement: its exact text, session, role and row estimate",
		Example: "  custos holds show hold-1a2b3c4d5e6f7a8b",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var h hold
			if err := g.call(cmd.Context(), "GET", "/api/v1/holds/"+url.PathEscape(args[0]), nil, &h); err != nil {
				return fmt.Errorf("holds show: %w", err)
			}
			return g.printHold(h)
		},
	})
	cmd.AddCommand(newHoldDecideCmd(g, true), newHoldDecideCmd(g, false))
	return cmd
}

func (g *globals) printHold(h hold) error {
	if asJSON, err := g.jsonOutput(); err != nil || asJSON {
		if err != nil {
			return err
		}
		return g.printJSON(h)
	}
	fmt.Fprintf(g.stdout, "hold %s: %s\nsession %s of %s on %s/%s (database %s)\nrules: %s\nestimate: %s %s\n",
		h.ID, h.State, h.Session, h.User, h.Target, h.Role, h.Database, strings.Join(h.Rules, ", "), h.estimate(), h.EstimateNote)
	if h.Params > 0 {
		fmt.Fprintf(g.stdout, "parameters: %d (bound by digest %s)\n", h.Params, h.Digest)
	}
	if h.DecidedBy != "" {
		fmt.Fprintf(g.stdout, "decided by %s %s\n", h.DecidedBy, h.Reason)
	}
	fmt.Fprintf(g.stdout, "statement:\n%s\n", h.Text)
	return nil
}

func newHoldDecideCmd(g *globals, approve bool) *cobra.Command {
	verb, short := "deny", "Refuse a held statement (the client gets SQLSTATE 42501)"
	if approve {
		verb, short = "approve", "Let a held statement run, once"
	}
	var reason string
	c := &cobra.Command{
		Use:     verb + " ID",
		Short:   short,
		Example: "  custos holds " + verb + " hold-1a2b3c4d5e6f7a8b --reason \"INC-123 agreed\"",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var h hold
			path := "/api/v1/holds/" + url.PathEscape(args[0]) + "/" + verb
			if err := g.call(cmd.Context(), "POST", path, map[string]string{"reason": reason}, &h); err != nil {
				return fmt.Errorf("holds %s: %w", verb, err)
			}
			return g.printHold(h)
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why (recorded with the decision)")
	return c
}

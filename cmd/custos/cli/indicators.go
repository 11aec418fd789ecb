package cli

import (
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/custos-pam/custos/broker/kri"
)

func newIndicatorsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "indicators [NAME]",
		Short: "Show the key risk indicators, or the records behind one (security staff)",
		Long: `Without NAME: every key risk indicator with its value, its status against the
limits in indicators.limits, and how many records are behind it, then the open
actions limit crossings raised. With NAME: that indicator's source, breakdown and
records, each with the web UI page that shows it. docs/indicators.md defines
each indicator.`,
		Example: `  custos indicators
  custos indicators sessions_without_recording
  custos indicators rubber_stamp_approvals -o json
  custos indicators actions
  custos indicators close act_5x2k --comment "recording restored from spool, INC-88"`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := g.jsonOutput()
			if err != nil {
				return err
			}
			if len(args) == 1 {
				var ind kri.Indicator
				if err := g.call(cmd.Context(), "GET", "/api/v1/indicators/"+url.PathEscape(args[0]), nil, &ind); err != nil {
					return fmt.Errorf("indicators: %w", err)
				}
				if asJSON {
					return g.printJSON(ind)
				}
				return printIndicator(g.stdout, ind)
			}
			var out struct {
				Indicators []kri.Indicator `json:"indicators"`
				Actions    []kri.Action    `json:"actions"`
			}
			if err := g.call(cmd.Context(), "GET", "/api/v1/indicators", nil, &out); err != nil {
				return fmt.Errorf("indicators: %w", err)
			}
			if asJSON {
				return g.printJSON(out)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "INDICATOR\tVALUE\tSTATUS\tLIMITS\tRECORDS")
			for _, in := range out.Indicators {
				status := in.Status
				if len(in.Crossed) > 0 {
					status = "CROSSED " + strings.Join(in.Crossed, ", ")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", in.Name, fmtIndicator(in), status, orDash(strings.Join(in.Limits, ", ")), in.RecordCount)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(out.Actions) > 0 {
				fmt.Fprintln(g.stdout)
				return printActions(g.stdout, out.Actions)
			}
			return nil
		},
	}
	cmd.AddCommand(newIndicatorActionsCmd(g), newIndicatorCloseCmd(g))
	return cmd
}

func newIndicatorActionsCmd(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:     "actions",
		Short:   "List the actions limit crossings opened (open ones; --all for every one)",
		Example: "  custos indicators actions\n  custos indicators actions --all -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := g.jsonOutput()
			if err != nil {
				return err
			}
			var acts []kri.Action
			if err := g.call(cmd.Context(), "GET", fmt.Sprintf("/api/v1/indicators/actions?all=%t", all), nil, &acts); err != nil {
				return fmt.Errorf("indicators actions: %w", err)
			}
			if asJSON {
				return g.printJSON(acts)
			}
			if len(acts) == 0 {
				fmt.Fprintln(g.stdout, "No open actions.")
				return nil
			}
			return printActions(g.stdout, acts)
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "include closed actions")
	return cmd
}

func newIndicatorCloseCmd(g *globals) *cobra.Command {
	var comment string
	cmd := &cobra.Command{
		Use:     "close ACTION",
		Short:   "Close an open action with a comment saying what was done (audited)",
		Example: `  custos indicators close act_5x2k --comment "TOTP enrolled for every DBA, CHG-301"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := g.jsonOutput()
			if err != nil {
				return err
			}
			if strings.TrimSpace(comment) == "" {
				return fmt.Errorf("indicators close: --comment is required: say what was done")
			}
			var a kri.Action
			if err := g.call(cmd.Context(), "POST", "/api/v1/indicators/actions/"+url.PathEscape(args[0])+"/close",
				map[string]string{"comment": comment}, &a); err != nil {
				return fmt.Errorf("indicators close: %w", err)
			}
			if asJSON {
				return g.printJSON(a)
			}
			fmt.Fprintf(g.stdout, "Closed %s (%s) by %s at %s.\n", a.ID, a.Limit, a.ClosedBy, a.ClosedAt.Local().Format(time.DateTime))
			return nil
		},
	}
	cmd.Flags().StringVar(&comment, "comment", "", "what was done (required)")
	return cmd
}

// fmtIndicator shows an indicator's value in its unit.
func fmtIndicator(in kri.Indicator) string {
	if in.Value == nil {
		return "no data"
	}
	v := *in.Value
	switch in.Unit {
	case "ratio":
		return fmt.Sprintf("%.1f%%", v*100)
	case "seconds":
		return (time.Duration(v * float64(time.Second))).Round(time.Second).String()
	}
	return fmt.Sprintf("%g", v)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printIndicator(w io.Writer, in kri.Indicator) error {
	fmt.Fprintf(w, "%s (%s): %s, %s\n", in.Title, in.Name, fmtIndicator(in), in.Status)
	fmt.Fprintf(w, "Source: %s\n", in.Source)
	if len(in.Limits) > 0 {
		fmt.Fprintf(w, "Limits: %s\n", strings.Join(in.Limits, ", "))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(in.Breakdown) > 0 {
		fmt.Fprintln(tw, "\nKEY\tCOUNT\tHOURS")
		for _, r := range in.Breakdown {
			fmt.Fprintf(tw, "%s\t%d\t%.2f\n", r.Key, r.Count, r.Seconds/3600)
		}
	}
	fmt.Fprintf(tw, "\n%d record(s)", in.RecordCount)
	if in.RecordCount > len(in.Records) {
		fmt.Fprintf(tw, ", first %d shown", len(in.Records))
	}
	fmt.Fprintln(tw)
	if len(in.Records) > 0 {
		fmt.Fprintln(tw, "KIND\tRECORD\tUSER\tTARGET\tTIME\tWHY\tPAGE")
		for _, r := range in.Records {
			id := r.ID
			if r.Kind == kri.KindAudit {
				id = fmt.Sprintf("#%d %s", r.Seq, r.ID)
			}
			at := "-"
			if !r.At.IsZero() {
				at = r.At.Local().Format(time.DateTime)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Kind, id, orDash(r.User), orDash(r.Target), at, orDash(r.Detail), orDash(r.Link))
		}
	}
	return tw.Flush()
}

func printActions(w io.Writer, acts []kri.Action) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACTION\tOPENED\tLIMIT\tVALUE\tOWNER\tSTATE\tCOMMENT")
	for _, a := range acts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%g\t%s\t%s\t%s\n", a.ID, a.OpenedAt.Local().Format(time.DateTime), a.Limit, a.Value, a.Owner,
			a.State, orDash(a.Comment))
	}
	return tw.Flush()
}

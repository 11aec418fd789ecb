package cli

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// drill is a drill's evidence as the CLI reads it.
type drill struct {
	ID           string    `json:"id"`
	Account      string    `json:"account"`
	Target       string    `json:"target"`
	Quarter      string    `json:"quarter"`
	StartedBy    string    `json:"started_by"`
	UnsealID     string    `json:"unseal_id"`
	Participants []string  `json:"participants"`
	Probe        string    `json:"probe"`
	StartedAt    time.Time `json:"started_at"`
	FinishedAt   time.Time `json:"finished_at"`
	Outcome      string    `json:"outcome"`
	Reason       string    `json:"reason"`
	TimeToAccess int64     `json:"time_to_access_ns"`
	RecordingID  string    `json:"recording_id"`
	Steps        []struct {
		Name      string    `json:"name"`
		StartedAt time.Time `json:"started_at"`
		EndedAt   time.Time `json:"ended_at"`
		Outcome   string    `json:"outcome"`
		Detail    string    `json:"detail"`
	} `json:"steps"`
}

func newDrillCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "drill",
		Short: "Run break-glass, restore and retrieval drills and report on them",
		Long: `A drill runs the whole break-glass path with a harmless probe instead of a person:
custodians unseal in drill mode (the same confirmations as a real unseal), the
broker logs in with the credential and runs the probe, then rotates, verifies and
reseals, recording every step's time as evidence.`,
		Example: `  custos drill run pg-admin --totp 123456 --wait
  custos drill status
  custos drill report --quarter 2026Q4 --format csv > drills-2026Q4.csv`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newDrillRunCmd(g), newDrillStatusCmd(g), newDrillShowCmd(g), newDrillReportCmd(g), newDrillRestoreCmd(g), newDrillRetrievalCmd(g))
	return cmd
}

func newDrillRunCmd(g *globals) *cobra.Command {
	var f factorFlags
	var wait bool
	cmd := &cobra.Command{
		Use:   "run ACCOUNT",
		Short: "Start a drill; other custodians confirm it with custos breakglass confirm",
		Example: `  custos drill run pg-admin --totp 123456
  custos drill run pg-admin --totp 123456 --wait   # until the drill ends; exit 1 when it fails`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := g.jsonOutput()
			if err != nil {
				return err
			}
			body, err := f.body(g)
			if err != nil {
				return err
			}
			body["account"] = args[0]
			var d drill
			if err := g.call(cmd.Context(), "POST", "/api/v1/drills", body, &d); err != nil {
				return fmt.Errorf("drill run: %w", err)
			}
			if !wait {
				if asJSON {
					return g.printJSON(d)
				}
				fmt.Fprintf(g.stdout, "drill %s of %s started (unseal %s). Other custodians confirm with:\n  custos breakglass confirm %s --totp CODE\nthen follow it with: custos drill show %s\n",
					d.ID, d.Account, d.UnsealID, d.UnsealID, d.ID)
				return nil
			}
			if !asJSON {
				fmt.Fprintf(g.stderr, "drill %s started; waiting for confirmations (custos breakglass confirm %s) and the drill's end\n", d.ID, d.UnsealID)
			}
			for d.Outcome == "running" {
				if err := sleepCtx(cmd.Context(), waitTick); err != nil {
					return err
				}
				if err := g.call(cmd.Context(), "GET", "/api/v1/drills/"+url.PathEscape(d.ID), nil, &d); err != nil {
					return fmt.Errorf("drill run: %w", err)
				}
			}
			if asJSON {
				if err := g.printJSON(d); err != nil {
					return err
				}
			} else {
				g.printDrill(d)
			}
			if d.Outcome != "passed" {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the drill ends and print its evidence")
	return cmd
}

func (g *globals) printDrill(d drill) {
	w := g.stdout
	fmt.Fprintf(w, "drill %s of %s (%s): %s\n", d.ID, d.Account, d.Target, strings.ToUpper(d.Outcome))
	if d.Reason != "" {
		fmt.Fprintf(w, "  reason: %s\n", d.Reason)
	}
	fmt.Fprintf(w, "  started %s by %s; participants: %s\n", d.StartedAt.Local().Format(time.RFC1123), d.StartedBy, strings.Join(d.Participants, ", "))
	if d.TimeToAccess > 0 {
		fmt.Fprintf(w, "  time to access %s", time.Duration(d.TimeToAccess).Round(time.Millisecond))
		if !d.FinishedAt.IsZero() {
			fmt.Fprintf(w, "; total %s", d.FinishedAt.Sub(d.StartedAt).Round(time.Millisecond))
		}
		fmt.Fprintln(w)
	}
	if d.RecordingID != "" {
		fmt.Fprintf(w, "  recording %s (custos play %s)\n", d.RecordingID, d.RecordingID)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  STEP\tSTARTED\tDURATION\tOUTCOME\tDETAIL")
	for _, s := range d.Steps {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", s.Name, s.StartedAt.Local().Format(time.TimeOnly),
			s.EndedAt.Sub(s.StartedAt).Round(time.Millisecond), s.Outcome, s.Detail)
	}
	_ = tw.Flush()
}

func newDrillShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "show ID",
		Short:   "Show one drill's evidence, step by step",
		Example: "  custos drill show drl_5x2kq7m3abcdefgh",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(cmd.Context(), g, "drill show", "GET", "/api/v1/drills/"+url.PathEscape(args[0]), nil, printed(g.printDrill))
		},
	}
}

func newDrillStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "status",
		Short:   "Show when each account's drill is due and how the last one went",
		Example: "  custos drill status",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := g.jsonOutput()
			if err != nil {
				return err
			}
			var out []struct {
				Account string    `json:"account"`
				Target  string    `json:"target"`
				Due     bgDue     `json:"due"`
				LastOK  time.Time `json:"last_ok"`
				Last    *drill    `json:"last"`
				Running *drill    `json:"running"`
			}
			if err := g.call(cmd.Context(), "GET", "/api/v1/drills", nil, &out); err != nil {
				return fmt.Errorf("drill status: %w", err)
			}
			if asJSON {
				return g.printJSON(out)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ACCOUNT\tTARGET\tSCHEDULE\tNEXT DUE\tLAST DRILL\tOUTCOME\tRUNNING")
			for _, s := range out {
				due := s.Due.NextDue.Local().Format(time.DateTime)
				if s.Due.Overdue {
					due += " OVERDUE"
				}
				last, outcome, running := "-", "-", "-"
				if s.Last != nil {
					last, outcome = s.Last.ID+" "+s.Last.StartedAt.Local().Format(time.DateOnly), s.Last.Outcome
					if s.Last.Reason != "" {
						outcome += ": " + s.Last.Reason
					}
				}
				if s.Running != nil {
					running = s.Running.ID + " (confirm " + s.Running.UnsealID + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Account, s.Target, s.Due.Schedule, due, last, outcome, running)
			}
			return tw.Flush()
		},
	}
}

func newDrillReportCmd(g *globals) *cobra.Command {
	var quarter, format string
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Report a quarter's drills for the inspection binder (text, JSON or CSV)",
		Example: `  custos drill report --quarter 2026Q4
  custos drill report --quarter 2026Q4 --format csv > drills-2026Q4.csv
  custos drill report --quarter 2026Q4 --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := g.jsonOutput()
			if err != nil {
				return err
			}
			if asJSON {
				format = "json"
			}
			switch format {
			case "text", "json", "csv":
			default:
				return fmt.Errorf("drill report: --format must be text, json or csv, not %q", format)
			}
			q := url.Values{"quarter": {quarter}, "format": {format}}
			var raw json.RawMessage
			if err := g.call(cmd.Context(), "GET", "/api/v1/drills/report?"+q.Encode(), nil, &raw); err != nil {
				return fmt.Errorf("drill report: %w", err)
			}
			_, err = g.stdout.Write(raw)
			return err
		},
	}
	cmd.Flags().StringVar(&quarter, "quarter", "", "calendar quarter (UTC), e.g. 2026Q4 (required)")
	cmd.Flags().StringVar(&format, "format", "text", "text, json or csv")
	_ = cmd.MarkFlagRequired("quarter")
	return cmd
}

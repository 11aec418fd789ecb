package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/store"
	"github.com/custos-pam/custos/cmd/custos/app"
)

func newAuditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Read and verify the hash-chained audit log"}
	cmd.AddCommand(newAuditVerifyCmd(g), newAuditListCmd(g))
	return cmd
}

func newAuditVerifyCmd(g *globals) *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the audit chain against its signed checkpoints and name the first broken record",
		Long: `Walks the hash-chained audit log in the state store and compares it with every signed
checkpoint in the recordings bucket. Exits 1 naming the first record that is broken or
disagrees with a checkpoint, or listing checkpoint problems (bad signature, deleted,
records left uncovered).`,
		Example: `  custos audit verify                                   # through the broker (security admins)
  custos audit verify --config /etc/custos/custos.yaml  # straight from the store and bucket, broker up or down
  custos audit verify -o json                           # the full report`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var rep audit.Report
			if cfgPath != "" {
				cfg, err := config.Load(cfgPath)
				if err != nil {
					return err
				}
				st, err := store.Open(cmd.Context(), cfg.Store)
				if err != nil {
					return err
				}
				defer st.Close()
				v, err := app.AuditVerifier(cfg, st)
				if err != nil {
					return fmt.Errorf("audit verify: %w", err)
				}
				if rep, err = v.Verify(cmd.Context()); err != nil {
					return fmt.Errorf("audit verify: %w", err)
				}
			} else if err := g.call(cmd.Context(), "GET", "/api/v1/audit/verify", nil, &rep); err != nil {
				return fmt.Errorf("audit verify: %w", err)
			}
			if j, err := g.jsonOutput(); err != nil {
				return err
			} else if j {
				if err := g.printJSON(rep); err != nil {
					return err
				}
			} else {
				printAuditReport(g.stdout, rep)
			}
			switch {
			case rep.FirstBad != 0:
				return &exitError{code: exitTampered, msg: fmt.Sprintf("audit chain broken at record %d: %s", rep.FirstBad, rep.Problem)}
			case rep.Checkpoints != nil && len(rep.Checkpoints.Problems) > 0:
				return &exitError{code: exitTampered, msg: fmt.Sprintf("audit checkpoints: %d problem(s), the first: %s",
					len(rep.Checkpoints.Problems), rep.Checkpoints.Problems[0])}
			case !rep.OK:
				return &exitError{code: exitTampered, msg: "audit verify: the log did not verify"}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "read the store and the checkpoints named in this config file instead of asking the broker")
	return cmd
}

// printAuditReport writes a verification report as text: the chain, the
// checkpoints and every checkpoint problem.
func printAuditReport(w io.Writer, rep audit.Report) {
	if rep.FirstBad == 0 {
		fmt.Fprintf(w, "audit chain intact: %d records, head %s\n", rep.Records, rep.Head)
	} else {
		fmt.Fprintf(w, "audit chain broken at record %d (%d records before it intact)\n", rep.FirstBad, rep.Records)
	}
	cp := rep.Checkpoints
	if cp == nil {
		return
	}
	fmt.Fprintf(w, "checkpoints: %d found, %d signed by a trusted key", cp.Found, cp.Verified)
	if n := cp.Newest; n != nil {
		fmt.Fprintf(w, "; newest covers record %d (taken %s by %s)", n.Seq, n.Time.UTC().Format(time.RFC3339), n.Replica)
	}
	fmt.Fprintln(w)
	for _, p := range cp.Problems {
		fmt.Fprintf(w, "checkpoint problem: %s\n", p)
	}
}

func newAuditListCmd(g *globals) *cobra.Command {
	var actor, target, action, since string
	var limit int
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List audit records (security admins)",
		Example: "  custos audit list --target demo-pg --action grant. --since 2026-11-01T00:00:00Z",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := g.jsonOutput()
			if err != nil {
				return err
			}
			q := url.Values{}
			for k, v := range map[string]string{"actor": actor, "target": target, "action": action, "since": since} {
				if v != "" {
					q.Set(k, v)
				}
			}
			q.Set("limit", fmt.Sprint(limit))
			var recs []json.RawMessage
			if err := g.call(cmd.Context(), "GET", "/api/v1/audit?"+q.Encode(), nil, &recs); err != nil {
				return err
			}
			if asJSON {
				return g.printJSON(recs)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tTIME\tACTOR\tACTION\tTARGET\tOUTCOME\tREASON")
			for _, raw := range recs {
				var r struct {
					Seq                                    int64
					Time                                   time.Time
					Actor, Action, Target, Outcome, Reason string
				}
				_ = json.Unmarshal(raw, &r)
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Seq, r.Time.Format(time.RFC3339), r.Actor, r.Action, r.Target, r.Outcome, r.Reason)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&actor, "actor", "", "only records by this actor")
	cmd.Flags().StringVar(&target, "target", "", "only records about this target")
	cmd.Flags().StringVar(&action, "action", "", "only actions starting with this prefix, e.g. grant.")
	cmd.Flags().StringVar(&since, "since", "", "only records at or after this RFC 3339 time")
	cmd.Flags().IntVar(&limit, "limit", 200, "at most this many records")
	return cmd
}

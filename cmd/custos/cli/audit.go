package cli

import (
	"encoding/json"
	"fmt"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/store"
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
		Short: "Walk the audit chain and name the first broken record",
		Example: `  custos audit verify                                   # through the broker (security admins)
  custos audit verify --config /etc/custos/custos.yaml  # straight from the store, broker down`,
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
				if rep, err = audit.Verify(cmd.Context(), st); err != nil {
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
			} else if rep.OK {
				fmt.Fprintf(g.stdout, "audit chain intact: %d records, head %s\n", rep.Records, rep.Head)
			}
			if !rep.OK {
				return &exitError{code: 1, msg: fmt.Sprintf("audit chain broken at record %d: %s", rep.FirstBad, rep.Problem)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "read the store named in this config file instead of asking the broker")
	return cmd
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

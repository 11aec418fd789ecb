package cli

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func newEvidenceCmd(g *globals) *cobra.Command {
	var target, from, to, file string
	cmd := &cobra.Command{
		Use:   "evidence",
		Short: "Download the evidence bundle (ZIP) of a target for a period",
		Long: `Downloads one ZIP with everything Custos knows about a target in a period:
grants, requests and approvals with their approvers, sessions with their
recording verdicts and the commands and statements they ran, break-glass
events, access reviews, and the audit chain segment with its verification;
as index.html (opens offline) and evidence.json (docs/evidence.schema.json).
Security staff and auditors only. The download has no overall timeout and
shows progress on a terminal.`,
		Example: `  custos evidence --target demo-pg --from 2026-10-01 --to 2026-11-01
  custos evidence --target demo-pg --from 2026-10-01 --to 2026-11-01 -f october.zip`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if target == "" || from == "" || to == "" {
				return usageErr(fmt.Errorf("evidence: --target, --from and --to are required"))
			}
			if file == "" {
				file = fmt.Sprintf("custos-evidence-%s-%s-%s.zip", fileName(target), fileName(from), fileName(to))
			}
			q := url.Values{"target": {target}, "from": {from}, "to": {to}}
			var w io.Writer = g.stdout
			if file != "-" {
				f, err := os.OpenFile(file+".part", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
				if err != nil {
					return fmt.Errorf("evidence: %w", err)
				}
				defer os.Remove(file + ".part")
				defer f.Close()
				w = f
			}
			if err := g.streamAs(cmd.Context(), "evidence", "/api/v1/evidence?"+q.Encode(), w); err != nil {
				return fmt.Errorf("evidence: %w", err)
			}
			if f, ok := w.(*os.File); ok {
				if err := f.Close(); err != nil {
					return fmt.Errorf("evidence: %w", err)
				}
				if err := os.Rename(file+".part", file); err != nil {
					return fmt.Errorf("evidence: %w", err)
				}
				fmt.Fprintf(g.stderr, "evidence bundle written to %s\n", file)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&target, "target", "", "target name")
	cmd.Flags().StringVar(&from, "from", "", "start of the period (2026-10-01 or RFC 3339, UTC)")
	cmd.Flags().StringVar(&to, "to", "", "end of the period, excluded")
	cmd.Flags().StringVarP(&file, "file", "f", "", "write to this file (mode 0600; - for standard output); default custos-evidence-TARGET-FROM-TO.zip")
	return cmd
}

// fileName keeps a value to characters safe in a file name.
func fileName(s string) string {
	return strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' {
			return c
		}
		return '_'
	}, s)
}

// shareLink is a share link as the CLI reads it.
type shareLink struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	Target    string    `json:"target"`
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	SessionID string    `json:"session_id"`
	Note      string    `json:"note"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	RevokedBy string    `json:"revoked_by"`
	Uses      int       `json:"uses"`
	State     string    `json:"state"`
	URL       string    `json:"url"`
}

func (l shareLink) what() string {
	if l.Kind == "session" {
		return "session " + l.SessionID
	}
	return fmt.Sprintf("evidence %s %s to %s", l.Target, l.From.Format(time.RFC3339), l.To.Format(time.RFC3339))
}

func newShareCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "share",
		Short: "Give an inspector a time-boxed, read-only link to one evidence bundle or one recording",
		Long: `A share link works without an account until it expires or is revoked. Its
token is in the URL and shown once, at creation; the broker keeps only its
hash. Creation, every use and revocation are audited. Security staff only.`,
		Example: `  custos share create --evidence --target demo-pg --from 2026-10-01 --to 2026-11-01 --for 72h
  custos share create --session ses_abc123 --for 24h --note "inspection 2026-12"
  custos share list
  custos share revoke shr_abc123`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newShareCreateCmd(g), newShareListCmd(g), newShareRevokeCmd(g))
	return cmd
}

func newShareCreateCmd(g *globals) *cobra.Command {
	var ev bool
	var target, from, to, session, note string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "create (--evidence --target X --from T1 --to T2 | --session ID) [--for 72h]",
		Short: "Create a share link and print its URL (shown once)",
		Example: `  custos share create --evidence --target demo-pg --from 2026-10-01 --to 2026-11-01 --for 72h
  custos share create --session ses_abc123 --for 24h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]string{"ttl": ttl.String(), "note": note}
			switch {
			case ev && session == "":
				body["kind"], body["target"], body["from"], body["to"] = "evidence", target, from, to
			case session != "" && !ev:
				body["kind"], body["session_id"] = "session", session
			default:
				return usageErr(fmt.Errorf("share create: give --evidence (with --target, --from, --to) or --session ID"))
			}
			return show(cmd.Context(), g, "share create", "POST", "/api/v1/shares",
				func() (any, error) { return body, nil },
				printed(func(l shareLink) {
					fmt.Fprintf(g.stdout, "%s\n", l.URL)
					fmt.Fprintf(g.stderr, "share link %s (%s) works until %s; the URL is shown only now\n",
						l.ID, l.what(), l.ExpiresAt.Local().Format(time.RFC1123))
				}))
		},
	}
	cmd.Flags().BoolVar(&ev, "evidence", false, "share the evidence bundle of --target for --from to --to")
	cmd.Flags().StringVar(&target, "target", "", "target of the evidence bundle")
	cmd.Flags().StringVar(&from, "from", "", "start of the period (2026-10-01 or RFC 3339, UTC)")
	cmd.Flags().StringVar(&to, "to", "", "end of the period, excluded")
	cmd.Flags().StringVar(&session, "session", "", "share one recording: its evidence bundle and its export")
	cmd.Flags().DurationVar(&ttl, "for", 72*time.Hour, "how long the link works (at most 720h)")
	cmd.Flags().StringVar(&note, "note", "", "what the link is for (audited)")
	return cmd
}

func newShareListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List share links: what each shares, until when, how often it was used",
		Example: `  custos share list`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(cmd.Context(), g, "share list", "GET", "/api/v1/shares", nil, printed(func(ls []shareLink) {
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSTATE\tSHARES\tBY\tEXPIRES\tUSES")
				for _, l := range ls {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", l.ID, l.State, l.what(), l.CreatedBy,
						l.ExpiresAt.Local().Format("2006-01-02 15:04"), l.Uses)
				}
				tw.Flush()
			}))
		},
	}
}

func newShareRevokeCmd(g *globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:     "revoke ID",
		Short:   "Revoke a share link now",
		Example: `  custos share revoke shr_abc123 --reason "inspection closed"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "/api/v1/shares/" + url.PathEscape(args[0])
			if reason != "" {
				path += "?" + url.Values{"reason": {reason}}.Encode()
			}
			return show(cmd.Context(), g, "share revoke", "DELETE", path, nil, printed(func(l shareLink) {
				fmt.Fprintf(g.stdout, "share link %s revoked\n", l.ID)
			}))
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (audited)")
	return cmd
}

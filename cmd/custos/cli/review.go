package cli

import (
	"fmt"
	"net/url"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/custos-pam/custos/broker/review"
)

func newReviewCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "review",
		Short: "Run access reviews: who may request, approve, unseal, and who holds standing tokens",
		Long: `An access review snapshots, for every target and role, who may request and who
may approve (group members resolved), the custodians of every break-glass
account and every standing API token, and shows the difference since the last
attested review. Reviewers attest or flag each line, then sign the attestation
with their password, TOTP code and a meaning. See docs/access-reviews.md.`,
		Example: `  custos review start --name 2026Q4
  custos review show rev_5x2kq7m3abcdefgh
  custos review flag rev_5x2kq7m3abcdefgh 3 --comment "carol left the DBA team"
  custos review attest rev_5x2kq7m3abcdefgh --meaning "reviewed, concerns raised" --totp 123456
  custos review status
  custos review export rev_5x2kq7m3abcdefgh -o json > review-2026Q4.json`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newReviewStartCmd(g), newReviewStatusCmd(g), newReviewShowCmd(g), newReviewMarkCmd(g, review.VerdictAttest),
		newReviewMarkCmd(g, review.VerdictFlag), newReviewAttestCmd(g), newReviewExportCmd(g))
	return cmd
}

func newReviewStartCmd(g *globals) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:     "start",
		Short:   "Snapshot access now and open a review of what changed since the last attested one",
		Example: "  custos review start --name 2026Q4",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(cmd.Context(), g, "review start", "POST", "/api/v1/reviews",
				func() (any, error) { return map[string]string{"name": name}, nil }, printed(g.printReview))
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "the review's name (default: the quarter, e.g. 2026Q4)")
	return cmd
}

func newReviewShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "show ID",
		Short:   "Show a review's diff lines with their marks and its attestation",
		Example: "  custos review show rev_5x2kq7m3abcdefgh",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(cmd.Context(), g, "review show", "GET", "/api/v1/reviews/"+url.PathEscape(args[0]), nil, printed(g.printReview))
		},
	}
}

func (g *globals) printReview(r review.Review) {
	w := g.stdout
	fmt.Fprintf(w, "review %s %q: %s, started %s by %s\n", r.ID, r.Name, r.State, r.StartedAt.UTC().Format(time.RFC3339), r.StartedBy)
	if r.Base != "" {
		fmt.Fprintf(w, "  changes since review %s (last attested)\n", r.Base)
	} else {
		fmt.Fprintln(w, "  first review: every line is new")
	}
	fmt.Fprintf(w, "  snapshot %d entries, hash %s\n", len(r.Snapshot), r.SnapshotHash)
	if len(r.Lines) == 0 {
		fmt.Fprintln(w, "  no changes since the last attested review")
	}
	for _, l := range r.Lines {
		fmt.Fprintf(w, "%4d  %s\n", l.N, l.Text)
		for _, m := range l.Marks {
			fmt.Fprintf(w, "        %s by %s: %s\n", m.Verdict, m.By, m.Comment)
		}
	}
	if a := r.Attestation; a != nil {
		s := a.Signature
		fmt.Fprintf(w, "  attested by %s at %s: %q (%s); %d flagged\n", s.PrintedName, s.Time.UTC().Format(time.RFC3339), s.Meaning, s.Method, a.Flagged)
	}
}

func newReviewMarkCmd(g *globals, verdict string) *cobra.Command {
	var comment string
	short := "Attest one line of an open review"
	if verdict == review.VerdictFlag {
		short = "Flag one line of an open review, with a comment saying what is wrong"
	}
	// "attest ID" signs the whole review; a line is attested with
	// attest-line.
	use := verdict
	if verdict == review.VerdictAttest {
		use = "attest-line"
	}
	cmd := &cobra.Command{
		Use:     use + " ID LINE",
		Short:   short,
		Example: fmt.Sprintf("  custos review %s rev_5x2kq7m3abcdefgh 3 --comment \"checked with the team lead\"", use),
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.Atoi(args[1])
			if err != nil {
				return usageErr(fmt.Errorf("LINE is the line's number, not %q", args[1]))
			}
			path := "/api/v1/reviews/" + url.PathEscape(args[0]) + "/lines/" + strconv.Itoa(n)
			return show(cmd.Context(), g, "review "+verdict, "POST", path,
				func() (any, error) { return map[string]string{"verdict": verdict, "comment": comment}, nil },
				printed(func(l review.Line) { fmt.Fprintf(g.stdout, "%d  %s: %s by you\n", l.N, l.Text, verdict) }))
		},
	}
	cmd.Flags().StringVar(&comment, "comment", "", "your comment (required to flag)")
	return cmd
}

func newReviewAttestCmd(g *globals) *cobra.Command {
	var f factorFlags
	var meaning string
	cmd := &cobra.Command{
		Use:   "attest ID",
		Short: "Sign a review's attestation: your password, TOTP code and the meaning of your signature",
		Example: `  custos review attest rev_5x2kq7m3abcdefgh --meaning "reviewed, no concerns" --totp 123456
  echo "$PW" | custos review attest rev_5x2kq7m3abcdefgh --meaning "reviewed, concerns raised" --totp 123456 --password-stdin`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if meaning == "" {
				return usageErr(fmt.Errorf("--meaning is required (see custos review status for the configured meanings)"))
			}
			return show(cmd.Context(), g, "review attest", "POST", "/api/v1/reviews/"+url.PathEscape(args[0])+"/attest",
				func() (any, error) {
					body, err := f.body(g)
					if err != nil {
						return nil, err
					}
					delete(body, "via")
					body["meaning"] = meaning
					return body, nil
				}, printed(g.printReview))
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&meaning, "meaning", "", `what your signature means, one of signatures.meanings.review (e.g. "reviewed, no concerns")`)
	return cmd
}

func newReviewStatusCmd(g *globals) *cobra.Command {
	type list struct {
		Status  review.Status    `json:"status"`
		Reviews []review.Summary `json:"reviews"`
	}
	return &cobra.Command{
		Use:     "status",
		Short:   "Show the open and last attested review, whether one is overdue, and every review",
		Example: "  custos review status",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(cmd.Context(), g, "review status", "GET", "/api/v1/reviews", nil, func(l list) error {
				w := g.stdout
				st := l.Status
				switch {
				case st.Overdue && st.LastAttested == nil:
					fmt.Fprintln(w, "OVERDUE: no access review has been attested yet")
				case st.Overdue:
					fmt.Fprintf(w, "OVERDUE: due %s (every %s)\n", st.DueAt.UTC().Format(time.RFC3339), st.Every)
				default:
					fmt.Fprintf(w, "next review due %s (every %s)\n", st.DueAt.UTC().Format(time.RFC3339), st.Every)
				}
				if st.Current != nil {
					fmt.Fprintf(w, "open: %s %q started %s by %s, %d lines, %d flagged\n", st.Current.ID, st.Current.Name,
						st.Current.StartedAt.UTC().Format(time.RFC3339), st.Current.StartedBy, st.Current.Lines, st.Current.Flagged)
				}
				if st.LastAttested != nil {
					fmt.Fprintf(w, "last attested: %s %q at %s\n", st.LastAttested.ID, st.LastAttested.Name, st.LastAttested.AttestedAt.UTC().Format(time.RFC3339))
				}
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tNAME\tSTATE\tSTARTED\tATTESTED\tLINES\tFLAGGED")
				for _, r := range l.Reviews {
					att := "-"
					if !r.AttestedAt.IsZero() {
						att = r.AttestedAt.UTC().Format(time.DateOnly)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\n", r.ID, r.Name, r.State, r.StartedAt.UTC().Format(time.DateOnly), att, r.Lines, r.Flagged)
				}
				return tw.Flush()
			})
		},
	}
}

func newReviewExportCmd(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "export ID",
		Short: "Export a review with its chain of attested reviews as JSON, every hash checked again",
		Example: `  custos review export rev_5x2kq7m3abcdefgh -o json > review-2026Q4.json
  custos review export rev_5x2kq7m3abcdefgh --file review-2026Q4.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var ex review.Export
			if err := g.call(cmd.Context(), "GET", "/api/v1/reviews/"+url.PathEscape(args[0])+"/export", nil, &ex); err != nil {
				return fmt.Errorf("review export: %w", err)
			}
			if file != "" {
				out, err := os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
				if err != nil {
					return fmt.Errorf("review export: %w", err)
				}
				defer out.Close()
				old := g.stdout
				g.stdout = out
				defer func() { g.stdout = old }()
			}
			if err := g.printJSON(ex); err != nil {
				return fmt.Errorf("review export: %w", err)
			}
			if !ex.Verified {
				fmt.Fprintf(g.stderr, "review chain does NOT verify: %s\n", ex.Problem)
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "write the export to this new file instead of standard output")
	return cmd
}

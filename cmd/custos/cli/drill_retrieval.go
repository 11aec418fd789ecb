package cli

import (
	"archive/zip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// retrievalLimit is the time an inspector's question may take.
const retrievalLimit = 5 * time.Minute

// retrievalQuestion is one timed question, as the broker files it.
type retrievalQuestion struct {
	Q     string `json:"q"`
	MS    int64  `json:"ms"`
	Pass  bool   `json:"pass"`
	Error string `json:"error,omitempty"`
}

// drillSubject is what the questions ask about: a session, its grant,
// user and target, and the month it ran in.
type drillSubject struct {
	Session, Grant, User, Target string
	At                           time.Time
	From, To                     time.Time
}

type drillSession struct {
	ID        string    `json:"id"`
	GrantID   string    `json:"grant_id"`
	User      string    `json:"user"`
	Target    string    `json:"target"`
	State     string    `json:"state"`
	StartedAt time.Time `json:"started_at"`
	Commands  []string  `json:"commands"`
}

func newDrillRetrievalCmd(g *globals) *cobra.Command {
	var session string
	cmd := &cobra.Command{
		Use:   "retrieval",
		Short: "Time the answers to an inspector's questions through the API (five-minute retrieval)",
		Long: `Asks the broker, through the same API an inspector's helper would use:
  1. who could reach target X on date Y
  2. what did user U run on X in period P
  3. who approved grant G, and was the recording tampered with
  4. the evidence bundle for X in month M
about the most recent closed session (or --session), times each answer, and
files the run with the broker: pass or fail against five minutes per
question, an audit record, and the pass rate the retrieval indicator reads.
Security staff and auditors only.`,
		Example: `  custos drill retrieval
  custos drill retrieval --session ses_abc123 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			sub, err := g.drillSubject(ctx, session)
			if err != nil {
				return fmt.Errorf("drill retrieval: %w", err)
			}
			qs := []retrievalQuestion{
				g.timed(fmt.Sprintf("who could reach %s on %s", sub.Target, sub.At.Format("2006-01-02 15:04Z")), func() error {
					return g.askAccess(ctx, sub)
				}),
				g.timed(fmt.Sprintf("what did %s run on %s in %s", sub.User, sub.Target, sub.From.Format("2006-01")), func() error {
					return g.askRan(ctx, sub)
				}),
				g.timed(fmt.Sprintf("who approved grant %s and was recording %s tampered with", sub.Grant, sub.Session), func() error {
					return g.askApproved(ctx, sub)
				}),
				g.timed(fmt.Sprintf("evidence bundle for %s in %s", sub.Target, sub.From.Format("2006-01")), func() error {
					return g.askBundle(ctx, sub)
				}),
			}
			return show(ctx, g, "drill retrieval", "POST", "/api/v1/drills/retrieval",
				func() (any, error) { return map[string]any{"questions": qs}, nil },
				printed(func(run struct {
					Questions []retrievalQuestion `json:"questions"`
					PassRate  float64             `json:"pass_rate"`
				}) {
					tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "RESULT\tTIME\tQUESTION")
					for _, q := range run.Questions {
						res := "pass"
						if !q.Pass {
							res = "FAIL"
						}
						line := q.Q
						if q.Error != "" {
							line += ": " + q.Error
						}
						fmt.Fprintf(tw, "%s\t%v\t%s\n", res, time.Duration(q.MS)*time.Millisecond, line)
					}
					tw.Flush()
					fmt.Fprintf(g.stdout, "pass rate %.0f%% (each answer within %v)\n", run.PassRate*100, retrievalLimit)
				}))
		},
	}
	cmd.Flags().StringVar(&session, "session", "", "ask about this session (default: the most recent closed one)")
	return cmd
}

// timed runs one question and times it; the broker re-checks the limit.
func (g *globals) timed(q string, ask func() error) retrievalQuestion {
	began := time.Now()
	err := ask()
	took := time.Since(began)
	out := retrievalQuestion{Q: q, MS: took.Milliseconds(), Pass: err == nil && took <= retrievalLimit}
	if err != nil {
		out.Error = err.Error()
	}
	return out
}

func (g *globals) drillSubject(ctx context.Context, id string) (drillSubject, error) {
	var s drillSession
	if id != "" {
		if err := g.call(ctx, "GET", "/api/v1/sessions/"+url.PathEscape(id), nil, &s); err != nil {
			return drillSubject{}, err
		}
	} else {
		var ss []drillSession
		if err := g.call(ctx, "GET", "/api/v1/sessions?state=closed&limit=1", nil, &ss); err != nil {
			return drillSubject{}, err
		}
		if len(ss) == 0 {
			return drillSubject{}, errors.New("no closed session to ask about yet")
		}
		s = ss[0]
	}
	from := time.Date(s.StartedAt.Year(), s.StartedAt.Month(), 1, 0, 0, 0, 0, time.UTC)
	return drillSubject{Session: s.ID, Grant: s.GrantID, User: s.User, Target: s.Target, At: s.StartedAt.UTC(),
		From: from, To: from.AddDate(0, 1, 0)}, nil
}

// askAccess: the session's grant must be among those that could reach
// the target when it started.
func (g *globals) askAccess(ctx context.Context, s drillSubject) error {
	var out struct {
		Grants []struct {
			ID string `json:"id"`
		} `json:"grants"`
	}
	q := url.Values{"target": {s.Target}, "at": {s.At.Format(time.RFC3339Nano)}}
	if err := g.call(ctx, "GET", "/api/v1/access?"+q.Encode(), nil, &out); err != nil {
		return err
	}
	if !slices.ContainsFunc(out.Grants, func(x struct {
		ID string `json:"id"`
	}) bool {
		return x.ID == s.Grant
	}) {
		return fmt.Errorf("grant %s is not in the answer", s.Grant)
	}
	return nil
}

// askRan: the user's sessions on the target in the month, each with the
// commands it ran.
func (g *globals) askRan(ctx context.Context, s drillSubject) error {
	q := url.Values{"user": {s.User}, "target": {s.Target}, "since": {s.From.Format(time.RFC3339)},
		"until": {s.To.Format(time.RFC3339)}, "limit": {"5000"}}
	var ss []drillSession
	if err := g.call(ctx, "GET", "/api/v1/sessions?"+q.Encode(), nil, &ss); err != nil {
		return err
	}
	found := false
	for _, x := range ss {
		var d drillSession
		if err := g.call(ctx, "GET", "/api/v1/sessions/"+url.PathEscape(x.ID), nil, &d); err != nil {
			return err
		}
		found = found || d.ID == s.Session
	}
	if !found {
		return fmt.Errorf("session %s is not in the answer", s.Session)
	}
	return nil
}

// askApproved: the grant's approvers and a fresh verification of the
// recording. A tampered recording is an answer, not a failure.
func (g *globals) askApproved(ctx context.Context, s drillSubject) error {
	var gr struct {
		Approvers  []string `json:"approvers"`
		BreakGlass string   `json:"break_glass"`
	}
	if err := g.call(ctx, "GET", "/api/v1/grants/"+url.PathEscape(s.Grant), nil, &gr); err != nil {
		return err
	}
	if len(gr.Approvers) == 0 && gr.BreakGlass == "" {
		return errors.New("the grant names no approver")
	}
	var rep struct {
		Verdict string `json:"verdict"`
	}
	if err := g.call(ctx, "GET", "/api/v1/sessions/"+url.PathEscape(s.Session)+"/verify", nil, &rep); err != nil {
		return err
	}
	if rep.Verdict == "" {
		return errors.New("no verdict")
	}
	return nil
}

// askBundle downloads the month's evidence bundle and checks it holds
// evidence.json and index.html.
func (g *globals) askBundle(ctx context.Context, s drillSubject) error {
	f, err := os.CreateTemp("", "custos-drill-*.zip")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	q := url.Values{"target": {s.Target}, "from": {s.From.Format(time.RFC3339)}, "to": {s.To.Format(time.RFC3339)}}
	if err := g.streamAs(ctx, "evidence", "/api/v1/evidence?"+q.Encode(), f); err != nil {
		return err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	zr, err := zip.NewReader(f, size)
	if err != nil {
		return fmt.Errorf("the bundle is not a zip: %w", err)
	}
	var names []string
	for _, zf := range zr.File {
		names = append(names, zf.Name)
	}
	if !slices.Contains(names, "evidence.json") || !slices.Contains(names, "index.html") {
		return errors.New("the bundle lacks evidence.json or index.html")
	}
	return nil
}

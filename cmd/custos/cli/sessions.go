package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

type session struct {
	ID         string    `json:"id"`
	GrantID    string    `json:"grant_id"`
	User       string    `json:"user"`
	Target     string    `json:"target"`
	Protocol   string    `json:"protocol"`
	StartedAt  time.Time `json:"started_at"`
	EndedAt    time.Time `json:"ended_at"`
	State      string    `json:"state"`
	Bytes      int64     `json:"bytes"`
	Statements int64     `json:"statements"`
	// Replica is the broker replica that runs (ran) the session.
	Replica string `json:"replica,omitempty"`
}

func newSessionsCmd(g *globals) *cobra.Command {
	var user, target, protocol, since, until, contains, state string
	cmd := &cobra.Command{
		Use:   "sessions",
		Short: "List and search recorded sessions",
		Example: `  custos sessions --target demo-pg --since 2026-11-01T00:00:00Z
  custos sessions --contains "DROP TABLE" --output json
  custos sessions kill ses_abc123 --reason "suspicious activity"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := g.jsonOutput()
			if err != nil {
				return err
			}
			q := url.Values{}
			for k, v := range map[string]string{"user": user, "target": target, "protocol": protocol, "since": since,
				"until": until, "contains": contains, "state": state} {
				if v != "" {
					q.Set(k, v)
				}
			}
			var ss []session
			if err := g.call(cmd.Context(), "GET", "/api/v1/sessions?"+q.Encode(), nil, &ss); err != nil {
				return fmt.Errorf("sessions: %w", err)
			}
			if asJSON {
				return g.printJSON(ss)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tUSER\tTARGET\tPROTOCOL\tSTARTED\tDURATION\tSTATE\tBYTES\tSTATEMENTS")
			for _, s := range ss {
				d := "-"
				if !s.EndedAt.IsZero() {
					d = s.EndedAt.Sub(s.StartedAt).Round(time.Second).String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", s.ID, s.User, s.Target, s.Protocol,
					s.StartedAt.Local().Format(time.DateTime), d, s.State, s.Bytes, s.Statements)
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&user, "user", "", "only sessions of this user")
	f.StringVar(&target, "target", "", "only sessions on this target")
	f.StringVar(&protocol, "protocol", "", "only ssh or postgres sessions")
	f.StringVar(&since, "since", "", "started at or after this RFC 3339 time")
	f.StringVar(&until, "until", "", "started before this RFC 3339 time")
	f.StringVar(&contains, "contains", "", "commands, SQL or file paths containing this text")
	f.StringVar(&state, "state", "", "live, closed, interrupted or terminated")

	var reason string
	kill := &cobra.Command{
		Use:     "kill ID",
		Short:   "Terminate a live session (security admins)",
		Example: `  custos sessions kill ses_abc123 --reason "suspicious activity"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(reason) == "" {
				return errors.New("sessions kill: --reason is required")
			}
			if err := g.call(cmd.Context(), "POST", "/api/v1/sessions/"+url.PathEscape(args[0])+"/kill", map[string]string{"reason": reason}, nil); err != nil {
				return fmt.Errorf("sessions kill: %w", err)
			}
			fmt.Fprintf(g.stdout, "session %s terminated\n", args[0])
			return nil
		},
	}
	kill.Flags().StringVar(&reason, "reason", "", "why the session is terminated (required)")
	cmd.AddCommand(kill)
	return cmd
}

// verifyReport is the part of the recorder's verify report the CLI prints.
type verifyReport struct {
	SessionID string `json:"session_id"`
	Intact    bool   `json:"intact"`
	Verdict   string `json:"verdict"`
	Chunks    int    `json:"chunks"`
	Events    int64  `json:"events"`
	Tampering []struct {
		Key    string `json:"key"`
		Detail string `json:"detail"`
	} `json:"tampering"`
	Retention struct {
		Mode  string    `json:"mode"`
		Until time.Time `json:"until"`
	} `json:"retention"`
}

func newVerifyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "verify SESSION",
		Short:   "Re-download a recording and check its chain, signature and retention",
		Example: "  custos verify ses_abc123",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Verifying re-reads the whole recording from the object store:
			// no overall timeout (Ctrl-C ends it), time shown on a terminal.
			c, err := g.newClient(true)
			if err != nil {
				return fmt.Errorf("verify: %w", err)
			}
			c.http.Timeout = 0
			p := g.startProgress("verify "+args[0], 0)
			var raw json.RawMessage
			err = c.do(cmd.Context(), "GET", "/api/v1/sessions/"+url.PathEscape(args[0])+"/verify", nil, &raw)
			p.stop()
			if err != nil {
				return fmt.Errorf("verify: %w", err)
			}
			var rep verifyReport
			if err := json.Unmarshal(raw, &rep); err != nil {
				return fmt.Errorf("verify: %w", err)
			}
			if j, _ := g.jsonOutput(); j {
				if _, err := g.stdout.Write(raw); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(g.stdout, "%s: %s (%d chunks, %d events", rep.SessionID, rep.Verdict, rep.Chunks, rep.Events)
				if rep.Retention.Mode != "" {
					fmt.Fprintf(g.stdout, ", %s retention until %s", rep.Retention.Mode, rep.Retention.Until.Format(time.DateOnly))
				}
				fmt.Fprintln(g.stdout, ")")
				for _, t := range rep.Tampering {
					fmt.Fprintf(g.stdout, "  tampering attempt: %s: %s\n", t.Key, t.Detail)
				}
			}
			if !rep.Intact {
				return &exitError{code: exitTampered, msg: "verify: " + rep.Verdict}
			}
			return nil
		},
	}
}

// stream GETs an export and copies it to w as it arrives, with no overall
// timeout; on a terminal, with progress on stderr when w is not the
// terminal itself.
func (g *globals) stream(ctx context.Context, path string, w io.Writer) error {
	return g.streamAs(ctx, "export", path, w)
}

// streamAs is stream with label naming the transfer in the progress line.
func (g *globals) streamAs(ctx context.Context, label, path string, w io.Writer) error {
	c, err := g.newClient(true)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	c.http.Timeout = 0
	resp, err := c.http.Do(req)
	if err != nil {
		return &unreachableError{err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var eb struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&eb)
		return &apiError{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
	}
	var p *progress
	if !isTerminal(w) {
		total := resp.ContentLength // -1 when streamed
		p = g.startProgress(label, total)
	}
	_, err = io.Copy(io.MultiWriter(w, p), resp.Body)
	p.stop()
	return err
}

func newExportCmd(g *globals) *cobra.Command {
	var format, out string
	var channel int
	var input bool
	cmd := &cobra.Command{
		Use:   "export SESSION",
		Short: "Export a recording as asciicast v2 (terminal) or JSON lines (raw events)",
		Example: `  custos export ses_abc123 --format asciicast -f session.cast && asciinema play session.cast
  custos export ses_abc123 --format jsonl > events.jsonl`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{"format": {format}}
			if channel > 0 {
				q.Set("channel", fmt.Sprint(channel))
			}
			if input {
				q.Set("input", "true")
			}
			var w io.Writer = g.stdout
			if out != "" && out != "-" {
				f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
				if err != nil {
					return fmt.Errorf("export: %w", err)
				}
				defer f.Close()
				w = f
			}
			if err := g.stream(cmd.Context(), "/api/v1/sessions/"+url.PathEscape(args[0])+"/export?"+q.Encode(), w); err != nil {
				return fmt.Errorf("export: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "asciicast", "asciicast or jsonl")
	cmd.Flags().StringVarP(&out, "file", "f", "", "write to this file (mode 0600) instead of standard output")
	cmd.Flags().IntVar(&channel, "channel", 0, "terminal channel for asciicast (default: the first with output)")
	cmd.Flags().BoolVar(&input, "input", false, "include keystrokes in the asciicast")
	return cmd
}

func newPlayCmd(g *globals) *cobra.Command {
	var speed float64
	var skipIdle bool
	cmd := &cobra.Command{
		Use:     "play SESSION",
		Short:   "Replay a terminal session in this terminal",
		Example: "  custos play ses_abc123 --speed 2 --skip-idle",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if speed <= 0 {
				return errors.New("play: --speed must be > 0")
			}
			pr, pw := io.Pipe()
			errc := make(chan error, 1)
			go func() {
				err := g.stream(cmd.Context(), "/api/v1/sessions/"+url.PathEscape(args[0])+"/export?format=asciicast", pw)
				pw.CloseWithError(err)
				errc <- err
			}()
			if err := playCast(cmd.Context(), pr, g.stdout, speed, skipIdle); err != nil {
				pr.CloseWithError(err)
				if serr := <-errc; serr != nil {
					return fmt.Errorf("play: %w", serr)
				}
				return fmt.Errorf("play: %w", err)
			}
			return <-errc
		},
	}
	cmd.Flags().Float64Var(&speed, "speed", 1, "playback speed multiplier")
	cmd.Flags().BoolVar(&skipIdle, "skip-idle", false, "cap pauses at one second")
	return cmd
}

// playCast writes an asciicast v2 stream's output events to w in (scaled)
// real time.
func playCast(ctx context.Context, r io.Reader, w io.Writer, speed float64, skipIdle bool) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return err
		}
		return errors.New("empty recording")
	}
	var last float64
	for sc.Scan() {
		var ev []json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || len(ev) != 3 {
			return fmt.Errorf("malformed asciicast event")
		}
		var at float64
		var kind, data string
		_ = json.Unmarshal(ev[0], &at)
		_ = json.Unmarshal(ev[1], &kind)
		_ = json.Unmarshal(ev[2], &data)
		if kind != "o" {
			continue
		}
		wait := (at - last) / speed
		if skipIdle && wait > 1 {
			wait = 1
		}
		last = at
		if wait > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(wait * float64(time.Second))):
			}
		}
		if _, err := io.WriteString(w, data); err != nil {
			return err
		}
	}
	return sc.Err()
}

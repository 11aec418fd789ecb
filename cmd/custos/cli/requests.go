package cli

import (
	"bufio"
	"context"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// request and grant are the API objects as the CLI reads them.
type request struct {
	ID        string     `json:"id"`
	User      string     `json:"user"`
	Target    string     `json:"target"`
	Role      string     `json:"role"`
	State     string     `json:"state"`
	Duration  string     `json:"duration"`
	Reason    string     `json:"reason"`
	Ticket    string     `json:"ticket"`
	Required  int        `json:"required"`
	Approvals []decision `json:"approvals"`
	ExpiresAt time.Time  `json:"expires_at"`
	GrantID   string     `json:"grant_id"`
	// Extends names the grant an extension request asks more time for.
	Extends     string    `json:"extends,omitempty"`
	GrantEndsAt time.Time `json:"grant_ends_at,omitzero"`
}

type decision struct {
	By      string    `json:"by"`
	At      time.Time `json:"at"`
	Comment string    `json:"comment"`
}

type grant struct {
	ID        string    `json:"id"`
	RequestID string    `json:"request_id"`
	User      string    `json:"user"`
	Target    string    `json:"target"`
	Role      string    `json:"role"`
	StartsAt  time.Time `json:"starts_at"`
	EndsAt    time.Time `json:"ends_at"`
	Approvers []string  `json:"approvers"`
	State     string    `json:"state"`
	// EndingSoon: the broker says the grant ends within its notice time.
	EndingSoon bool `json:"ending_soon,omitempty"`
}

func newRequestCmd(g *globals) *cobra.Command {
	var role, dur, reason, ticket string
	var wait bool
	cmd := &cobra.Command{
		Use:   "request TARGET",
		Short: "Ask for time-boxed access to a target",
		Example: `  custos request demo-pg --role readonly --for 1h --reason "INC-123 check replication lag"
  custos request demo-ssh --role ops --for 30m --reason "rotate logs" --ticket OPS-42 --wait`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := g.jsonOutput()
			if err != nil {
				return err
			}
			var r request
			body := map[string]string{"target": args[0], "role": role, "duration": dur, "reason": reason, "ticket": ticket}
			if err := g.call(cmd.Context(), "POST", "/api/v1/requests", body, &r); err != nil {
				return fmt.Errorf("request: %w", err)
			}
			if !wait {
				if asJSON {
					return g.printJSON(r)
				}
				fmt.Fprintf(g.stdout, "request %s is pending: needs %d approval(s), expires %s\n", r.ID, r.Required, r.ExpiresAt.Local().Format(time.RFC1123))
				return nil
			}
			if !asJSON {
				fmt.Fprintf(g.stderr, "request %s is pending; waiting for approval until %s\n", r.ID, r.ExpiresAt.Local().Format(time.Kitchen))
			}
			return g.waitDecision(cmd.Context(), r.ID, asJSON)
		},
	}
	cmd.Flags().StringVar(&role, "role", "", "role to request (required)")
	cmd.Flags().StringVar(&dur, "for", "1h", "how long the access should last, e.g. 30m or 2h")
	cmd.Flags().StringVar(&reason, "reason", "", "why you need access")
	cmd.Flags().StringVar(&ticket, "ticket", "", "ticket or incident ID")
	cmd.Flags().BoolVar(&wait, "wait", false, "block until the request is decided and print the grant")
	_ = cmd.MarkFlagRequired("role")
	return cmd
}

// waitDecision polls the request until it leaves pending.
func (g *globals) waitDecision(ctx context.Context, id string, asJSON bool) error {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		var r request
		if err := g.call(ctx, "GET", "/api/v1/requests/"+url.PathEscape(id), nil, &r); err != nil {
			return err
		}
		if r.State == "approved" {
			id := r.GrantID
			if r.Extends != "" {
				id = r.Extends
			}
			var gr grant
			if err := g.call(ctx, "GET", "/api/v1/grants/"+url.PathEscape(id), nil, &gr); err != nil {
				return err
			}
			if asJSON {
				return g.printJSON(gr)
			}
			verb := "approved: grant"
			if r.Extends != "" {
				verb = "extension approved: grant"
			}
			fmt.Fprintf(g.stdout, "%s %s on %s as %s until %s\n", verb, gr.ID, gr.Target, gr.Role, gr.EndsAt.Local().Format(time.RFC1123))
			return nil
		}
		if r.State != "pending" {
			return &exitError{code: exitRefused, msg: fmt.Sprintf("request %s was %s", r.ID, r.State)}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func newRequestsCmd(g *globals) *cobra.Command {
	var pending, mine bool
	cmd := &cobra.Command{
		Use:   "requests",
		Short: "List access requests",
		Example: `  custos requests --pending      # requests waiting for your decision
  custos requests --mine --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := g.jsonOutput()
			if err != nil {
				return err
			}
			q := url.Values{}
			if pending {
				q.Set("pending", "true")
			}
			if mine {
				q.Set("mine", "true")
			}
			var rs []request
			if err := g.call(cmd.Context(), "GET", "/api/v1/requests?"+q.Encode(), nil, &rs); err != nil {
				return err
			}
			if asJSON {
				return g.printJSON(rs)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tUSER\tTARGET\tROLE\tFOR\tSTATE\tAPPROVALS\tEXPIRES")
			for _, r := range rs {
				dur := r.Duration
				if r.Extends != "" {
					dur = "+" + dur + " on " + r.Extends
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\n", r.ID, r.User, r.Target, r.Role, dur, r.State,
					len(r.Approvals), r.Required, r.ExpiresAt.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&pending, "pending", false, "only pending requests you may decide")
	cmd.Flags().BoolVar(&mine, "mine", false, "only your own requests")
	return cmd
}

func newDecideCmd(g *globals, approve bool) *cobra.Command {
	var (
		comment, reason string
		f               factorFlags
	)
	use, short, example := "approve ID", "Approve a pending request", `  custos approve req_abc123 --comment "ok, INC-123"
  custos approve req_abc123 --meaning "approved for production change"   # signed: asks password and TOTP code
  echo "$PW" | custos approve req_abc123 --meaning "approved" --password-stdin --totp 123456
  custos approve req_abc123 --totp 123456   # a role with step_up: totp or any`
	action := "approve"
	if !approve {
		use, short, example = "deny ID", "Deny a pending request", `  custos deny req_abc123 --reason "use the read replica"
  custos deny req_abc123 --reason "no ticket" --meaning denied --totp 123456   # signed`
		action = "deny"
	}
	cmd := &cobra.Command{
		Use: use, Short: short, Example: example,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := g.jsonOutput()
			if err != nil {
				return err
			}
			path, body := "/approve", map[string]any{"comment": comment}
			if !approve {
				if strings.TrimSpace(reason) == "" {
					return fmt.Errorf("deny: --reason is required")
				}
				path, body = "/deny", map[string]any{"reason": reason}
			}
			var out struct {
				Request request `json:"request"`
				Grant   *grant  `json:"grant"`
			}
			endpoint := "/api/v1/requests/" + url.PathEscape(args[0])
			// What the decision needs: a signature (the role's
			// policy.signature, or --meaning), a step-up (policy.step_up,
			// approvals only), or neither. A signature is also the
			// step-up, so one TOTP code serves.
			var need struct {
				Target            string `json:"target"`
				Role              string `json:"role"`
				SignatureRequired bool   `json:"signature_required"`
				StepUp            string `json:"step_up"`
			}
			known := g.call(cmd.Context(), "GET", endpoint, nil, &need) == nil
			sign := f.meaning != "" || need.SignatureRequired
			if approve && need.StepUp == "passkey" {
				return fmt.Errorf("%s: approving %s/%s needs a passkey: approve it in the web UI (/ui/requests/%s)", action, need.Target, need.Role, args[0])
			}
			if err := addReauth(cmd.Context(), g, action, f, sign, approve && need.StepUp != "", body); err != nil {
				return fmt.Errorf("%s: %w", action, err)
			}
			err = g.call(cmd.Context(), "POST", endpoint+path, body, &out)
			if signatureNeeded(err) && !sign && !known {
				// The request could not be read first: sign now.
				if err = addReauth(cmd.Context(), g, action, f, true, false, body); err == nil {
					err = g.call(cmd.Context(), "POST", endpoint+path, body, &out)
				}
			}
			if err != nil {
				return fmt.Errorf("%s: %w", action, err)
			}
			if asJSON {
				return g.printJSON(out)
			}
			r := out.Request
			switch {
			case out.Grant != nil && r.Extends != "":
				fmt.Fprintf(g.stdout, "request %s approved: grant %s of %s on %s extended to %s\n", r.ID, out.Grant.ID, r.User, r.Target, out.Grant.EndsAt.Local().Format(time.RFC1123))
			case out.Grant != nil:
				fmt.Fprintf(g.stdout, "request %s approved: grant %s for %s on %s until %s\n", r.ID, out.Grant.ID, r.User, r.Target, out.Grant.EndsAt.Local().Format(time.RFC1123))
			case r.State == "pending":
				fmt.Fprintf(g.stdout, "request %s: %d of %d approvals\n", r.ID, len(r.Approvals), r.Required)
			default:
				fmt.Fprintf(g.stdout, "request %s is %s\n", r.ID, r.State)
			}
			return nil
		},
	}
	if approve {
		cmd.Flags().StringVar(&comment, "comment", "", "a note kept with your approval")
	} else {
		cmd.Flags().StringVar(&reason, "reason", "", "why the request is denied (required)")
	}
	f.add(cmd)
	f.addMeaning(cmd)
	return cmd
}

// addReauth puts the decision's re-authentication into body: the
// signature (sign), else the step-up code (stepUp: --totp, or a prompt on
// a terminal; without either the broker's step_up_required stands).
func addReauth(ctx context.Context, g *globals, action string, f factorFlags, sign, stepUp bool, body map[string]any) error {
	switch {
	case sign:
		sig, err := askSignature(ctx, g, action, f)
		if err != nil {
			return err
		}
		body["signature"] = sig
	case f.totp != "":
		body["step_up"] = map[string]string{"totp": f.totp}
	case stepUp && stdinTerminal(g):
		code, err := askSecret(g, bufio.NewReader(g.stdin), true, "TOTP code (step-up): ")
		if err != nil {
			return err
		}
		body["step_up"] = map[string]string{"totp": strings.TrimSpace(code)}
	}
	return nil
}

func newCancelCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "cancel ID",
		Short:   "Withdraw your pending request",
		Example: "  custos cancel req_abc123",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r request
			if err := g.call(cmd.Context(), "POST", "/api/v1/requests/"+url.PathEscape(args[0])+"/cancel", nil, &r); err != nil {
				return fmt.Errorf("cancel: %w", err)
			}
			if j, _ := g.jsonOutput(); j {
				return g.printJSON(r)
			}
			fmt.Fprintf(g.stdout, "request %s cancelled\n", r.ID)
			return nil
		},
	}
}

func newGrantsCmd(g *globals) *cobra.Command {
	var active bool
	var target string
	cmd := &cobra.Command{
		Use:     "grants",
		Short:   "List grants",
		Example: "  custos grants --active --target demo-pg",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := g.jsonOutput()
			if err != nil {
				return err
			}
			q := url.Values{}
			if active {
				q.Set("active", "true")
			}
			if target != "" {
				q.Set("target", target)
			}
			var gs []grant
			if err := g.call(cmd.Context(), "GET", "/api/v1/grants?"+q.Encode(), nil, &gs); err != nil {
				return err
			}
			if asJSON {
				return g.printJSON(gs)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tUSER\tTARGET\tROLE\tSTATE\tENDS\tAPPROVERS")
			for _, gr := range gs {
				ends := gr.EndsAt.Local().Format(time.DateTime)
				if gr.State == "active" && gr.EndingSoon {
					ends += " (ending soon: custos extend " + gr.ID + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", gr.ID, gr.User, gr.Target, gr.Role, gr.State,
					ends, strings.Join(gr.Approvers, ","))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&active, "active", false, "only active grants")
	cmd.Flags().StringVar(&target, "target", "", "only grants on this target")
	return cmd
}

func newRevokeCmd(g *globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:     "revoke GRANT",
		Short:   "End a grant now; live sessions on it are closed",
		Example: `  custos revoke gr_abc123 --reason "work finished"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var gr grant
			if err := g.call(cmd.Context(), "POST", "/api/v1/grants/"+url.PathEscape(args[0])+"/revoke", map[string]string{"reason": reason}, &gr); err != nil {
				return fmt.Errorf("revoke: %w", err)
			}
			if j, _ := g.jsonOutput(); j {
				return g.printJSON(gr)
			}
			fmt.Fprintf(g.stdout, "grant %s revoked\n", gr.ID)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why the grant is revoked")
	return cmd
}

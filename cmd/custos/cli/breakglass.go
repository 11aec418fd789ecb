package cli

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// bgAccount and bgUnseal are the break-glass API objects as the CLI reads
// them.
type bgAccount struct {
	Name              string          `json:"name"`
	State             string          `json:"state"`
	Target            string          `json:"target"`
	Role              string          `json:"role"`
	Credential        string          `json:"credential"`
	Custodians        []string        `json:"custodians"`
	Required          int             `json:"required"`
	SingleCustodian   bool            `json:"single_custodian"`
	MaxOpen           string          `json:"max_open"`
	Reveal            bool            `json:"reveal"`
	Unseal            *bgUnseal       `json:"unseal"`
	LastUnseal        *bgUnseal       `json:"last_unseal"`
	LastRotation      time.Time       `json:"last_rotation"`
	LastRotationError string          `json:"last_rotation_error"`
	CompromisedSince  time.Time       `json:"compromised_since"`
	Revealed          []string        `json:"revealed"`
	LastVerification  *bgVerification `json:"last_verification"`
	OutOfBand         *struct {
		DownFrom   time.Time `json:"down_from"`
		DownUntil  time.Time `json:"down_until"`
		Incident   string    `json:"incident"`
		ReportedBy string    `json:"reported_by"`
	} `json:"out_of_band"`
	LastDrill   string    `json:"last_drill"`
	LastDrillOK time.Time `json:"last_drill_ok"`
	Drill       bgDue     `json:"drill"`
}

type bgDue struct {
	Schedule string    `json:"schedule"`
	NextDue  time.Time `json:"next_due"`
	Overdue  bool      `json:"overdue"`
}

type bgUnseal struct {
	ID            string `json:"id"`
	Account       string `json:"account"`
	RequestedBy   string `json:"requested_by"`
	Reason        string `json:"reason"`
	Incident      string `json:"incident"`
	Drill         string `json:"drill"`
	Required      int    `json:"required"`
	Confirmations []struct {
		Custodian string    `json:"custodian"`
		At        time.Time `json:"at"`
	} `json:"confirmations"`
	ExpiresAt   time.Time `json:"expires_at"`
	OpenedAt    time.Time `json:"opened_at"`
	OpenUntil   time.Time `json:"open_until"`
	ClosedAt    time.Time `json:"closed_at"`
	ClosedBy    string    `json:"closed_by"`
	CloseReason string    `json:"close_reason"`
	GrantID     string    `json:"grant_id"`
	Outcome     string    `json:"outcome"`
}

type bgVerification struct {
	Rotated       bool   `json:"rotated"`
	NotApplicable string `json:"not_applicable"`
	OldRejected   bool   `json:"old_rejected"`
	NewAccepted   bool   `json:"new_accepted"`
	Terminated    int    `json:"terminated"`
}

func (u *bgUnseal) custodians() string {
	var names []string
	for _, c := range u.Confirmations {
		names = append(names, c.Custodian)
	}
	return strings.Join(names, ", ")
}

func newBreakglassCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "breakglass",
		Short: "Unseal, close and inspect sealed emergency accounts",
		Long: `Break-glass accounts are sealed emergency accounts. A custodian asks to unseal one
with a reason and an incident id; other custodians confirm, each with their
password and a fresh TOTP code. Once enough have confirmed, the account is open
for a bounded time through the broker's proxies, recorded like any grant. At
close or timeout Vault rotates the credential and the broker checks the old one
no longer works before resealing.`,
		Example: `  custos breakglass list
  custos breakglass unseal pg-admin --reason "primary down, approvers unreachable" --incident INC-4711 --totp 123456
  custos breakglass confirm bgu_5x2kq7m3abcdefgh --totp 654321
  custos breakglass close pg-admin --reason "replication restored"`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newBGListCmd(g), newBGStatusCmd(g), newBGUnsealCmd(g), newBGConfirmCmd(g), newBGCloseCmd(g),
		newBGRevealCmd(g), newBGReportCmd(g))
	return cmd
}

func newBGListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List the break-glass accounts you are a custodian of",
		Example: "  custos breakglass list --output json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := g.jsonOutput()
			if err != nil {
				return err
			}
			var list struct {
				Accounts []bgAccount `json:"accounts"`
			}
			if err := g.call(cmd.Context(), "GET", "/api/v1/breakglass", nil, &list); err != nil {
				return fmt.Errorf("breakglass list: %w", err)
			}
			as := list.Accounts
			if asJSON {
				return g.printJSON(as)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ACCOUNT\tTARGET\tROLE\tSTATE\tCUSTODIANS\tNEEDS\tNEXT DRILL")
			for _, a := range as {
				drill := a.Drill.NextDue.Local().Format(time.DateOnly)
				if a.Drill.Overdue {
					drill += " OVERDUE"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", a.Name, a.Target, a.Role, a.State,
					strings.Join(a.Custodians, ","), a.Required, drill)
			}
			return tw.Flush()
		},
	}
}

func newBGStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "status ACCOUNT",
		Short:   "Show a break-glass account's state, unseal and last rotation",
		Example: "  custos breakglass status pg-admin",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(cmd.Context(), g, "breakglass status", "GET", "/api/v1/breakglass/"+url.PathEscape(args[0]), nil, printed(g.printAccount))
		},
	}
}

func (g *globals) printAccount(a bgAccount) {
	w := g.stdout
	fmt.Fprintf(w, "%s: %s\n", a.Name, strings.ToUpper(a.State))
	fmt.Fprintf(w, "  target %s, role %s, credential %s; %d custodian(s) of %s must confirm; open at most %s\n",
		a.Target, a.Role, a.Credential, a.Required, strings.Join(a.Custodians, ", "), a.MaxOpen)
	if u := a.Unseal; u != nil {
		fmt.Fprintf(w, "  unseal %s by %s: %s [incident %s]\n", u.ID, u.RequestedBy, u.Reason, u.Incident)
		fmt.Fprintf(w, "  confirmed by %s (%d of %d)\n", u.custodians(), len(u.Confirmations), u.Required)
		switch {
		case a.State == "open" && u.Drill != "":
			fmt.Fprintf(w, "  open for drill %s until %s\n", u.Drill, u.OpenUntil.Local().Format(time.RFC1123))
		case a.State == "open":
			fmt.Fprintf(w, "  open for %s until %s (grant %s)\n", u.RequestedBy, u.OpenUntil.Local().Format(time.RFC1123), u.GrantID)
		default:
			fmt.Fprintf(w, "  waiting for confirmations until %s: custos breakglass confirm %s\n", u.ExpiresAt.Local().Format(time.RFC1123), u.ID)
		}
	} else if u := a.LastUnseal; u != nil {
		fmt.Fprintf(w, "  last unseal %s by %s (%s), %s", u.ID, u.RequestedBy, u.Incident, u.Outcome)
		if !u.ClosedAt.IsZero() {
			fmt.Fprintf(w, " %s by %s: %s", u.ClosedAt.Local().Format(time.RFC1123), u.ClosedBy, u.CloseReason)
		}
		fmt.Fprintln(w)
	}
	if len(a.Revealed) > 0 {
		fmt.Fprintf(w, "  secret revealed to %s: rotation at close\n", strings.Join(a.Revealed, ", "))
	}
	if a.State == "compromised-until-rotated" {
		fmt.Fprintf(w, "  COMPROMISED since %s: %s\n  retry with: custos breakglass close %s\n",
			a.CompromisedSince.Local().Format(time.RFC1123), a.LastRotationError, a.Name)
	}
	if !a.LastRotation.IsZero() {
		fmt.Fprintf(w, "  last rotation %s: %s\n", a.LastRotation.Local().Format(time.RFC1123), verification(a.LastVerification))
	}
	if o := a.OutOfBand; o != nil {
		fmt.Fprintf(w, "  out-of-band unseal: broker down %s – %s", o.DownFrom.Local().Format(time.RFC1123), o.DownUntil.Local().Format(time.RFC1123))
		if o.ReportedBy == "" {
			fmt.Fprintf(w, "; details wanted: custos breakglass report %s --incident ID --details TEXT\n", a.Name)
		} else {
			fmt.Fprintf(w, "; reported by %s (%s)\n", o.ReportedBy, o.Incident)
		}
	}
	due := a.Drill.NextDue.Local().Format(time.RFC1123)
	if a.Drill.Overdue {
		due += " (OVERDUE)"
	}
	fmt.Fprintf(w, "  drills %s; next due %s\n", a.Drill.Schedule, due)
}

func verification(v *bgVerification) string {
	switch {
	case v == nil:
		return "no verification"
	case v.NotApplicable != "":
		return "nothing to rotate (" + v.NotApplicable + ")"
	case v.Rotated && v.OldRejected && v.NewAccepted:
		return fmt.Sprintf("rotated by Vault; old credential refused, new one accepted; %d leftover session(s) ended", v.Terminated)
	default:
		return fmt.Sprintf("rotated=%t old refused=%t new accepted=%t", v.Rotated, v.OldRejected, v.NewAccepted)
	}
}

func newBGUnsealCmd(g *globals) *cobra.Command {
	var reason, incident string
	var f factorFlags
	cmd := &cobra.Command{
		Use:   "unseal ACCOUNT",
		Short: "Ask to open a break-glass account (counts as your confirmation)",
		Example: `  custos breakglass unseal pg-admin --reason "primary down" --incident INC-4711 --totp 123456
  echo "$PW" | custos breakglass unseal pg-admin --reason "..." --incident INC-4711 --totp 123456 --password-stdin`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(cmd.Context(), g, "breakglass unseal", "POST", "/api/v1/breakglass/"+url.PathEscape(args[0])+"/unseal",
				func() (any, error) {
					body, err := f.body(g)
					if err == nil {
						body["reason"], body["incident"] = reason, incident
					}
					return body, err
				}, printed(g.printUnseal))
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why the normal path is not enough (required)")
	cmd.Flags().StringVar(&incident, "incident", "", "incident id (required)")
	f.addMeaning(cmd)
	f.add(cmd)
	_ = cmd.MarkFlagRequired("reason")
	_ = cmd.MarkFlagRequired("incident")
	return cmd
}

func (g *globals) printUnseal(u bgUnseal) {
	if u.Outcome == "opened" {
		if u.Drill != "" {
			fmt.Fprintf(g.stdout, "%s is open for drill %s (confirmed by %s); the broker runs the drill now: custos drill show %s\n",
				u.Account, u.Drill, u.custodians(), u.Drill)
			return
		}
		fmt.Fprintf(g.stdout, "%s is OPEN for %s until %s (grant %s, confirmed by %s).\nConnect through the broker as with any grant; close it when done: custos breakglass close %s\n",
			u.Account, u.RequestedBy, u.OpenUntil.Local().Format(time.RFC1123), u.GrantID, u.custodians(), u.Account)
		return
	}
	fmt.Fprintf(g.stdout, "unseal %s of %s: %d of %d confirmation(s). Another custodian confirms with:\n  custos breakglass confirm %s --totp CODE\n(expires %s)\n",
		u.ID, u.Account, len(u.Confirmations), u.Required, u.ID, u.ExpiresAt.Local().Format(time.RFC1123))
}

func newBGConfirmCmd(g *globals) *cobra.Command {
	var f factorFlags
	cmd := &cobra.Command{
		Use:   "confirm ID",
		Short: "Confirm another custodian's unseal (or drill) with your password and TOTP code",
		Example: `  custos breakglass confirm bgu_5x2kq7m3abcdefgh --totp 654321
  custos breakglass confirm bgu_5x2kq7m3abcdefgh --totp 654321 --meaning "emergency access confirmed"   # signatures.unseal: required`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(cmd.Context(), g, "breakglass confirm", "POST", "/api/v1/breakglass/unseals/"+url.PathEscape(args[0])+"/confirm",
				func() (any, error) { return f.body(g) }, printed(g.printUnseal))
		},
	}
	f.add(cmd)
	f.addMeaning(cmd)
	return cmd
}

func newBGCloseCmd(g *globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "close ACCOUNT",
		Short: "Close an open account (rotate, verify, reseal) or cancel a pending unseal",
		Example: `  custos breakglass close pg-admin --reason "replication restored"
  custos breakglass close pg-admin    # a compromised account: retry the rotation`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(cmd.Context(), g, "breakglass close", "POST", "/api/v1/breakglass/"+url.PathEscape(args[0])+"/close",
				func() (any, error) { return map[string]string{"reason": reason}, nil },
				func(a bgAccount) error {
					g.printAccount(a)
					if a.State == "compromised-until-rotated" {
						return &exitError{code: 1, msg: "rotation failed: " + a.LastRotationError}
					}
					return nil
				})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why it is closed")
	return cmd
}

func newBGRevealCmd(g *globals) *cobra.Command {
	var f factorFlags
	cmd := &cobra.Command{
		Use:     "reveal ACCOUNT",
		Short:   "Show the secret of an open account, where the account allows it (audited; rotated at close)",
		Example: `  custos breakglass reveal pg-admin --totp 123456`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := g.jsonOutput()
			if err != nil {
				return err
			}
			body, err := f.body(g)
			if err != nil {
				return err
			}
			var sec struct {
				Username string `json:"username"`
				Password string `json:"password"`
			}
			if err := g.call(cmd.Context(), "POST", "/api/v1/breakglass/"+url.PathEscape(args[0])+"/reveal", body, &sec); err != nil {
				return fmt.Errorf("breakglass reveal: %w", err)
			}
			if asJSON {
				return g.printJSON(sec)
			}
			fmt.Fprintf(g.stdout, "username: %s\npassword: %s\n", sec.Username, sec.Password)
			fmt.Fprintln(g.stderr, "This reveal is audited; the secret stops working when the account closes.")
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

func newBGReportCmd(g *globals) *cobra.Command {
	var incident, details string
	cmd := &cobra.Command{
		Use:     "report ACCOUNT",
		Short:   "Say what happened during an out-of-band unseal (the broker was down and the account was rotated)",
		Example: `  custos breakglass report pg-admin --incident INC-4711 --details "read from Vault during the outage to restart replication"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(cmd.Context(), g, "breakglass report", "POST", "/api/v1/breakglass/"+url.PathEscape(args[0])+"/report",
				func() (any, error) { return map[string]string{"incident": incident, "details": details}, nil }, printed(g.printAccount))
		},
	}
	cmd.Flags().StringVar(&incident, "incident", "", "incident id (required)")
	cmd.Flags().StringVar(&details, "details", "", "what was done with the account (required)")
	_ = cmd.MarkFlagRequired("incident")
	_ = cmd.MarkFlagRequired("details")
	return cmd
}

// waitTick is how often --wait polls.
const waitTick = 500 * time.Millisecond

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

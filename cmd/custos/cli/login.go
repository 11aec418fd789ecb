package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func newLoginCmd(g *globals) *cobra.Command {
	var user, totp, sshKey string
	var passwordStdin, withSSH, force, sso, device, noBrowser bool
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Sign in to the broker and save a short-lived API token",
		Example: `  custos login --user alice
  echo "$PASSWORD" | custos login --user alice --password-stdin --totp 123456
  custos login --user alice --ssh                 # also certifies custos's own SSH key
  custos login --user alice --ssh --ssh-key ~/.ssh/id_ed25519   # writes ~/.ssh/id_ed25519-cert.pub (refuses to replace another CA's without --force)
  custos login --sso                              # single sign-on in your browser
  custos login --sso --device                     # single sign-on from a host without a browser`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.newClient(false)
			if err != nil {
				return err
			}
			var out loginResult
			switch {
			case device && !sso:
				return usageErr(errors.New("login: --device goes with --sso"))
			case sso:
				if out, err = g.loginSSO(cmd.Context(), c, device, noBrowser); err != nil {
					return err
				}
			default:
				if user == "" {
					user = os.Getenv("USER")
				}
				password, err := readPassword(g, passwordStdin)
				if err != nil {
					return err
				}
				if err := c.do(cmd.Context(), "POST", "/api/v1/login", map[string]string{"user": user, "password": password, "totp": totp}, &out); err != nil {
					return fmt.Errorf("login: %w", err)
				}
			}
			if err := saveToken(savedToken{URL: c.base, User: out.User, Token: out.Token, ExpiresAt: out.ExpiresAt}); err != nil {
				return err
			}
			// Later commands find the broker without --url.
			if err := saveProfile(profile{URL: c.base, CACert: absPath(g.caCert)}); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "logged in as %s until %s\n", out.User, out.ExpiresAt.Local().Format(time.RFC1123))
			if withSSH {
				return g.sshCertificate(cmd.Context(), sshKey, force)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "user name (default $USER)")
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from standard input")
	cmd.Flags().StringVar(&totp, "totp", "", "current TOTP code, when your account has a second factor")
	cmd.Flags().BoolVar(&withSSH, "ssh", false, "also get a short-lived SSH certificate for the SSH proxy")
	cmd.Flags().StringVar(&sshKey, "ssh-key", "", "private key whose public half (KEY.pub) is certified (default custos's own key in its config directory)")
	cmd.Flags().BoolVar(&sso, "sso", false, "sign in with the organisation's identity provider (single sign-on) in a browser")
	cmd.Flags().BoolVar(&device, "device", false, "with --sso, sign in on another device (for hosts without a browser)")
	cmd.Flags().BoolVar(&noBrowser, "no-browser", false, "with --sso, only print the sign-in URL instead of opening a browser")
	cmd.Flags().BoolVar(&force, "force", false, "with --ssh-key, replace an existing KEY-cert.pub that this broker did not issue")
	return cmd
}

// absPath makes a file name independent of the directory it was given in.
func absPath(p string) string {
	if p == "" {
		return ""
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

func newLogoutCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "logout",
		Short:   "Revoke and forget the saved API token (the broker URL stays remembered)",
		Example: "  custos logout",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := tokenPath()
			if err != nil {
				return err
			}
			if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
				fmt.Fprintln(g.stdout, "not logged in")
				return nil
			}
			// Revoke on the broker first, so a copy of the file is useless;
			// a token the broker no longer knows is forgotten all the same.
			var who struct {
				TokenID string `json:"token_id"`
			}
			revokeErr := g.call(cmd.Context(), "GET", "/api/v1/whoami", nil, &who)
			if revokeErr == nil && who.TokenID != "" {
				revokeErr = g.call(cmd.Context(), "DELETE", "/api/v1/tokens/"+who.TokenID, nil, nil)
			}
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("logout: %w", err)
			}
			var ae *apiError
			var ue *unauthenticatedError
			if revokeErr != nil && !errors.As(revokeErr, &ue) && !(errors.As(revokeErr, &ae) && ae.Status == 401) {
				fmt.Fprintf(g.stderr, "custos: logout: token forgotten here, but the broker did not revoke it: %v\n", revokeErr)
			}
			fmt.Fprintln(g.stdout, "logged out")
			return nil
		},
	}
}

func readPassword(g *globals, fromStdin bool) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(g.stdin).ReadString('\n')
		if err != nil && line == "" {
			return "", errors.New("login: no password on standard input")
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	f, ok := g.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", errors.New("login: no terminal to ask for the password; use --password-stdin")
	}
	fmt.Fprint(g.stderr, "Password: ")
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(g.stderr)
	if err != nil {
		return "", fmt.Errorf("login: read password: %w", err)
	}
	return string(b), nil
}

func newWhoamiCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "whoami",
		Short:   "Show who the saved token belongs to",
		Example: "  custos whoami",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var out map[string]any
			if err := g.call(cmd.Context(), "GET", "/api/v1/whoami", nil, &out); err != nil {
				return err
			}
			if j, err := g.jsonOutput(); err != nil || j {
				if err != nil {
					return err
				}
				return g.printJSON(out)
			}
			fmt.Fprintf(g.stdout, "%v (token %v, expires %v)\n", out["user"], out["token_id"], out["expires_at"])
			return nil
		},
	}
}

// call runs one authenticated API call.
func (g *globals) call(ctx context.Context, method, path string, in, out any) error {
	c, err := g.newClient(true)
	if err != nil {
		return err
	}
	return c.do(ctx, method, path, in, out)
}

// sshCertificate has the broker certify KEY.pub and writes KEY-cert.pub,
// where OpenSSH finds it next to the key; without a key, custos's own
// key in its config directory.
func (g *globals) sshCertificate(ctx context.Context, key string, force bool) error {
	id, out, err := g.certify(ctx, key, force)
	if err != nil {
		return fmt.Errorf("login --ssh: %w", err)
	}
	fmt.Fprintf(g.stdout, "SSH certificate %s valid until %s\n", id.Cert, out.ValidBefore.Local().Format(time.RFC1123))
	return nil
}

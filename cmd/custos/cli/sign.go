package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// signature is the body of an electronic signature (docs/policy.md): the
// meaning and a fresh re-authentication.
type signature struct {
	Meaning  string `json:"meaning"`
	Password string `json:"password"`
	TOTP     string `json:"totp"`
}

// factorFlags are how every step that re-authenticates takes its
// factors, the same on approve, deny, break-glass steps, drills and
// review attestations: --totp, --password-stdin and, where the step is
// (or may be) an electronic signature, --meaning, for scripts; a prompt
// on a terminal for what they leave out where the step asks.
type factorFlags struct {
	totp          string
	passwordStdin bool
	// meaning signs the step; see addMeaning.
	meaning string
}

// addMeaning adds --meaning to the steps that are, or may be,
// signatures.
func (f *factorFlags) addMeaning(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.meaning, "meaning", "", "the meaning of your electronic signature, one of the broker's list (signatures.meanings); asked on a terminal when the step is a signature")
}

func (f *factorFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.totp, "totp", "", "your current TOTP code: the second factor of a confirmation or signature, or an approval's step-up (each code is used once)")
	cmd.Flags().BoolVar(&f.passwordStdin, "password-stdin", false, "read your password from standard input (else asked on the terminal)")
}

// body is the password (standard input or terminal), the code and the
// meaning as the break-glass and review steps send them.
func (f *factorFlags) body(g *globals) (map[string]any, error) {
	pw, err := readPassword(g, f.passwordStdin)
	if err != nil {
		return nil, err
	}
	body := map[string]any{"password": pw, "totp": f.totp, "via": "cli"}
	if f.meaning != "" {
		body["meaning"] = f.meaning
	}
	return body, nil
}

// askSignature runs the CLI's side of the signing ceremony for action
// (approve, deny, unseal): it settles the meaning against the broker's
// list, then takes the password (standard input with --password-stdin or
// without a terminal, else a prompt without echo) and the TOTP code
// (--totp, else the next line of standard input or a prompt).
func askSignature(ctx context.Context, g *globals, action string, f factorFlags) (*signature, error) {
	var out struct {
		Meanings map[string][]string `json:"meanings"`
	}
	if err := g.call(ctx, "GET", "/api/v1/signatures/meanings", nil, &out); err != nil {
		return nil, err
	}
	list := out.Meanings[action]
	in := bufio.NewReader(g.stdin)
	tty := stdinTerminal(g)
	meaning := f.meaning
	switch {
	case meaning != "" && !slices.Contains(list, meaning):
		return nil, fmt.Errorf("meaning %q is not one of: %s", meaning, quoteAll(list))
	case meaning == "" && len(list) == 1:
		meaning = list[0]
	case meaning == "" && !tty:
		return nil, fmt.Errorf("this is an electronic signature: choose a meaning with --meaning, one of: %s", quoteAll(list))
	case meaning == "":
		fmt.Fprintln(g.stderr, "This is an electronic signature. What does it mean?")
		for i, m := range list {
			fmt.Fprintf(g.stderr, "  %d) %s\n", i+1, m)
		}
		fmt.Fprint(g.stderr, "Meaning [1]: ")
		line, _ := in.ReadString('\n')
		n, err := strconv.Atoi(strings.TrimSpace(line))
		if strings.TrimSpace(line) == "" {
			n, err = 1, nil
		}
		if err != nil || n < 1 || n > len(list) {
			return nil, errors.New("no such meaning")
		}
		meaning = list[n-1]
	}
	if tty && !f.passwordStdin {
		fmt.Fprintf(g.stderr, "Signing as %q: re-enter your password and a current TOTP code.\n", meaning)
	}
	pw, err := askSecret(g, in, tty && !f.passwordStdin, "Password: ")
	if err != nil {
		return nil, err
	}
	code := f.totp
	if code == "" {
		if code, err = askSecret(g, in, tty, "TOTP code: "); err != nil {
			return nil, err
		}
	}
	return &signature{Meaning: meaning, Password: pw, TOTP: strings.TrimSpace(code)}, nil
}

func stdinTerminal(g *globals) bool {
	f, ok := g.stdin.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// askSecret reads one secret without echo on a terminal, else one line.
func askSecret(g *globals, in *bufio.Reader, tty bool, prompt string) (string, error) {
	if !tty {
		line, err := in.ReadString('\n')
		if err != nil && line == "" {
			return "", errors.New("signing: no terminal, and standard input does not hold the password and TOTP code (one per line)")
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	fmt.Fprint(g.stderr, prompt)
	b, err := term.ReadPassword(int(g.stdin.(*os.File).Fd()))
	fmt.Fprintln(g.stderr)
	if err != nil {
		return "", fmt.Errorf("signing: read: %w", err)
	}
	return string(b), nil
}

func quoteAll(list []string) string {
	q := make([]string, len(list))
	for i, m := range list {
		q[i] = strconv.Quote(m)
	}
	return strings.Join(q, ", ")
}

// signatureNeeded reports whether err is the broker's signature_required.
func signatureNeeded(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Code == "signature_required"
}

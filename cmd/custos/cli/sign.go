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

	"golang.org/x/term"
)

// signature is the body of an electronic signature (docs/policy.md): the
// meaning and a fresh re-authentication. It is never a flag: the password
// and TOTP code are asked on the terminal without echo, or read as two
// lines (password, then code) from standard input when it is not one.
type signature struct {
	Meaning  string `json:"meaning"`
	Password string `json:"password"`
	TOTP     string `json:"totp"`
}

// askSignature runs the CLI's side of the signing ceremony for action
// (approve, deny, unseal): it settles the meaning against the broker's
// list, then asks for the password and a current TOTP code.
func askSignature(ctx context.Context, g *globals, action, meaning string) (*signature, error) {
	var out struct {
		Meanings map[string][]string `json:"meanings"`
	}
	if err := g.call(ctx, "GET", "/api/v1/signatures/meanings", nil, &out); err != nil {
		return nil, err
	}
	list := out.Meanings[action]
	in := bufio.NewReader(g.stdin)
	tty := stdinTerminal(g)
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
	if tty {
		fmt.Fprintf(g.stderr, "Signing as %q: re-enter your password and a current TOTP code.\n", meaning)
	}
	pw, err := askSecret(g, in, tty, "Password: ")
	if err != nil {
		return nil, err
	}
	code, err := askSecret(g, in, tty, "TOTP code: ")
	if err != nil {
		return nil, err
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

// errSignatureNeeded stands for signature_required before any call, when
// the user chose to sign (--meaning).
var errSignatureNeeded = &apiError{Status: 403, Code: "signature_required"}

// signatureNeeded reports whether err is the broker's signature_required.
func signatureNeeded(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Code == "signature_required"
}

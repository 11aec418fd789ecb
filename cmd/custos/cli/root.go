// Package cli holds the custos command tree: the broker (serve), config
// tools, and the client commands that talk to the broker's HTTP API.
package cli

import (
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// globals are the flags every command shares.
type globals struct {
	url    string
	caCert string
	// resolved is set once url and caCert were settled from flags,
	// environment and profile.
	resolved bool
	output   string
	stdout   io.Writer
	stderr   io.Writer
	stdin    io.Reader
}

// Main runs the command line and returns the process exit code (see
// errors.go). Errors are printed as one line on stderr, a JSON object with
// -o json.
func Main(args []string) int {
	g := &globals{stdout: os.Stdout, stderr: os.Stderr, stdin: os.Stdin}
	root := newRoot(g)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		out := g.output
		if out == "text" {
			// Flags that failed to parse left -o unset.
			out = outputArg(args)
		}
		return reportError(g.stderr, out, err)
	}
	return exitOK
}

// outputArg finds -o/--output in args, for errors raised before cobra
// parsed the flags.
func outputArg(args []string) string {
	for i, a := range args {
		switch {
		case a == "--":
			return "text"
		case (a == "-o" || a == "--output") && i+1 < len(args):
			return args[i+1]
		case strings.HasPrefix(a, "--output="):
			return strings.TrimPrefix(a, "--output=")
		case strings.HasPrefix(a, "-o") && len(a) > 2:
			return strings.TrimPrefix(strings.TrimPrefix(a, "-o"), "=")
		}
	}
	return "text"
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "custos",
		Short:         "Just-in-time privileged access with peer approval and recorded sessions",
		SilenceUsage:  true,
		SilenceErrors: true,
		Example: `  custos login --user alice
  custos request demo-pg --role readonly --for 1h --reason "INC-123 check replication"
  custos serve --config /etc/custos/custos.yaml`,
	}
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	root.SetIn(g.stdin)
	pf := root.PersistentFlags()
	pf.StringVar(&g.url, "url", "", "broker base URL (default $CUSTOS_URL, else the one custos login saved)")
	pf.StringVar(&g.caCert, "ca-cert", "", "PEM file of the CA the broker's certificate chains to (default $CUSTOS_CA_CERT, else the one custos login saved)")
	pf.StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	root.AddCommand(
		newServeCmd(g),
		newConfigCmd(g),
		newVersionCmd(g),
		newLoginCmd(g), newLogoutCmd(g), newTargetsCmd(g), newSSHConfigCmd(g), newSSHCmd(g),
		newWhoamiCmd(g), newStatusCmd(g),
		newRequestCmd(g),
		newRequestsCmd(g),
		newDecideCmd(g, true),
		newDecideCmd(g, false),
		newCancelCmd(g),
		newGrantsCmd(g),
		newRevokeCmd(g),
		newExtendCmd(g),
		newAuditCmd(g),
		newDBCmd(g),
		newSessionsCmd(g), newHoldsCmd(g),
		newVerifyCmd(g), newKeysCmd(g),
		newExportCmd(g),
		newPlayCmd(g),
		newBreakglassCmd(g), newDrillCmd(g),
		newReviewCmd(g),
		newIndicatorsCmd(g),
		newTokensCmd(g),
		newUsersCmd(g),
		newBackupCmd(g), newRestoreCmd(g),
		newEvidenceCmd(g), newShareCmd(g),
	)
	g.addCompletions(root)
	return root
}

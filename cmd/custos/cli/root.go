// Package cli holds the custos command tree: the broker (serve), config
// tools, and the client commands that talk to the broker's HTTP API.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// globals are the flags every command shares.
type globals struct {
	url    string
	output string
	stdout io.Writer
	stderr io.Writer
	stdin  io.Reader
}

// Main runs the command line and returns the process exit code. Errors are
// printed as one line on stderr.
func Main(args []string) int {
	g := &globals{stdout: os.Stdout, stderr: os.Stderr, stdin: os.Stdin}
	root := newRoot(g)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintln(g.stderr, "custos: "+ee.msg)
			}
			return ee.code
		}
		fmt.Fprintln(g.stderr, "custos: "+err.Error())
		return 1
	}
	return 0
}

// exitError ends the program with a specific code.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

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
	pf.StringVar(&g.url, "url", os.Getenv("CUSTOS_URL"), "broker base URL (default $CUSTOS_URL)")
	pf.StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	root.AddCommand(
		newServeCmd(g),
		newConfigCmd(g),
		newVersionCmd(g),
		newLoginCmd(g),
		newWhoamiCmd(g),
		newRequestCmd(g),
		newRequestsCmd(g),
		newDecideCmd(g, true),
		newDecideCmd(g, false),
		newCancelCmd(g),
		newGrantsCmd(g),
		newRevokeCmd(g),
		newAuditCmd(g),
		newDBCmd(g),
		newSessionsCmd(g),
		newVerifyCmd(g),
		newExportCmd(g),
		newPlayCmd(g),
		newBreakglassCmd(g), newDrillCmd(g),
		newTokensCmd(g),
	)
	return root
}

// Command devstack starts the local development stack (`make up`): PostgreSQL,
// MinIO, Vault and sshd on loopback with state in .dev, then the broker.
//
//	devstack up [-dir .dev] [-config deploy/dev/custos.yaml] [-custos bin/custos]
//
// deploy/dev/up.sh runs it; deploy/dev/down.sh stops what it started.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/custos-pam/custos/deploy/devstack"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "up" {
		fmt.Fprintln(os.Stderr, "usage: devstack up [-dir .dev] [-config deploy/dev/custos.yaml] [-custos bin/custos]")
		os.Exit(2)
	}
	root := devstack.RepoRoot()
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	dir := fs.String("dir", filepath.Join(root, ".dev"), "state directory")
	config := fs.String("config", filepath.Join(root, "deploy", "dev", "custos.yaml"), "broker config template with ${VAR} placeholders")
	custos := fs.String("custos", "", "broker binary to start (empty: do not start the broker)")
	_ = fs.Parse(os.Args[2:])
	if _, err := devstack.Up(devstack.UpOptions{Dir: *dir, ConfigTemplate: *config, Custos: *custos, Out: os.Stdout}); err != nil {
		fmt.Fprintf(os.Stderr, "devstack: %v\n", err)
		os.Exit(1)
	}
}

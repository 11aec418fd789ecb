// Command devstack starts the local development stack (`make up`): PostgreSQL,
// MinIO, Vault and sshd on loopback with state in .dev, then the broker.
//
//	devstack up [-dir .dev] [-config deploy/dev/custos.yaml] [-custos bin/custos] [-replicas 1|2]
//	devstack totp [-dir .dev] [-next] USER
//
// deploy/dev/up.sh runs it; deploy/dev/down.sh stops what it started.
// `devstack totp` prints a demo custodian's current TOTP code (what an
// authenticator app would show); -next waits for the next one, for a second
// command within the same 30 seconds (the broker accepts each code once).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/deploy/devstack"
)

const usage = `usage: devstack up [-dir .dev] [-config deploy/dev/custos.yaml] [-custos bin/custos] [-replicas 1|2]
       devstack totp [-dir .dev] [-next] USER`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	root := devstack.RepoRoot()
	switch os.Args[1] {
	case "up":
		fs := flag.NewFlagSet("up", flag.ExitOnError)
		dir := fs.String("dir", filepath.Join(root, ".dev"), "state directory")
		config := fs.String("config", filepath.Join(root, "deploy", "dev", "custos.yaml"), "broker config template with ${VAR} placeholders")
		custos := fs.String("custos", "", "broker binary to start (empty: do not start the broker)")
		replicas := fs.Int("replicas", 1, "brokers to start: 1 (SQLite store) or 2 (sharing a PostgreSQL store and the bucket)")
		_ = fs.Parse(os.Args[2:])
		if *replicas < 1 || *replicas > 2 {
			fmt.Fprintln(os.Stderr, "devstack: -replicas must be 1 or 2")
			os.Exit(2)
		}
		if _, err := devstack.Up(devstack.UpOptions{Dir: *dir, ConfigTemplate: *config, Custos: *custos, Replicas: *replicas,
			Out: os.Stdout}); err != nil {
			fmt.Fprintf(os.Stderr, "devstack: %v\n", err)
			os.Exit(1)
		}
	case "totp":
		fs := flag.NewFlagSet("totp", flag.ExitOnError)
		dir := fs.String("dir", filepath.Join(root, ".dev"), "state directory")
		next := fs.Bool("next", false, "wait for the next code instead of printing the current one")
		_ = fs.Parse(os.Args[2:])
		if fs.NArg() != 1 {
			fmt.Fprintln(os.Stderr, usage)
			os.Exit(2)
		}
		code, left, err := totpCode(*dir, fs.Arg(0), time.Now())
		if err == nil && *next {
			time.Sleep(left + 100*time.Millisecond)
			code, left, err = totpCode(*dir, fs.Arg(0), time.Now())
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "devstack: %v\n", err)
			os.Exit(1)
		}
		fmt.Println(code)
		if fi, err := os.Stdout.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprintf(os.Stderr, "(current for %ds more; each code is accepted once)\n", int(left.Seconds()))
		}
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
}

// totpStep is the RFC 6238 time step the broker checks codes against.
const totpStep = 30 * time.Second

// totpCode returns user's current TOTP code from the secret `make up`
// wrote and how long it stays current. The broker accepts each code once
// per user, so a second command within the same step needs the next code.
func totpCode(dir, user string, now time.Time) (string, time.Duration, error) {
	secret, err := devstack.TOTPSecret(dir, user)
	if err != nil {
		return "", 0, err
	}
	key, err := identity.ParseTOTPSecret(secret)
	if err != nil {
		return "", 0, fmt.Errorf("totp: %s: %w", user, err)
	}
	left := totpStep - time.Duration(now.UnixNano()%int64(totpStep))
	return identity.TOTP(key, now), left, nil
}

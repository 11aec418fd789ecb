package cli

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// The markers around the block custos ssh-config --write keeps in
// ~/.ssh/config.
const (
	sshBlockBegin = "# BEGIN custos (managed by custos ssh-config --write)"
	sshBlockEnd   = "# END custos"
)

func newSSHConfigCmd(g *globals) *cobra.Command {
	var key, file, prefix string
	var write, force bool
	cmd := &cobra.Command{
		Use:   "ssh-config",
		Short: "Print (or --write into ~/.ssh/config) a Host block per SSH target you may request",
		Long: `Print an OpenSSH Host block for each SSH target you may request: the broker's
host and SSH port, User TARGET, custos's own key and a fresh certificate for it,
and the broker's host key pinned under a HostKeyAlias in custos's own
known_hosts. The certificate is short-lived: custos login --ssh, custos ssh or
another ssh-config renews it. Nothing under ~/.ssh is written except, with
--write, a block between markers in ~/.ssh/config.`,
		Example: `  custos ssh-config >> ~/.ssh/config
  custos ssh-config --write && ssh demo-ssh`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ts, err := g.listTargets(cmd.Context())
			if err != nil {
				return err
			}
			id, cert, err := g.certify(cmd.Context(), key, force)
			if err != nil {
				return fmt.Errorf("ssh-config: %w", err)
			}
			kh, err := cert.knownHosts()
			if err != nil {
				return fmt.Errorf("ssh-config: %w", err)
			}
			var b strings.Builder
			fmt.Fprintf(&b, "%s\n# broker %s; certificate valid until %s\n", sshBlockBegin, g.url, cert.ValidBefore.UTC().Format(time.RFC3339))
			n := 0
			for _, t := range ts {
				if t.Kind != "ssh" {
					continue
				}
				n++
				fmt.Fprintf(&b, "Host %s%s\n", prefix, t.Name)
				for _, o := range cert.sshOptions(id, t.Name, kh) {
					fmt.Fprintf(&b, "  %s %s\n", o[0], sshQuote(o[1]))
				}
			}
			b.WriteString(sshBlockEnd + "\n")
			if n == 0 {
				fmt.Fprintln(g.stderr, "custos: ssh-config: no SSH targets you may request")
			}
			if !write {
				_, err := fmt.Fprint(g.stdout, b.String())
				return err
			}
			if file == "" {
				home, err := os.UserHomeDir()
				if err != nil {
					return fmt.Errorf("ssh-config: %w", err)
				}
				file = filepath.Join(home, ".ssh", "config")
			}
			if err := writeSSHBlock(file, b.String()); err != nil {
				return fmt.Errorf("ssh-config: %w", err)
			}
			fmt.Fprintf(g.stdout, "wrote %d Host block(s) to %s\n", n, file)
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "ssh-key", "", "private key to certify and use (default custos's own key in its config directory)")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing KEY-cert.pub that this broker did not issue")
	cmd.Flags().BoolVar(&write, "write", false, "add or update the custos block in ~/.ssh/config instead of printing it")
	cmd.Flags().StringVar(&file, "file", "", "ssh_config file for --write (default ~/.ssh/config)")
	cmd.Flags().StringVar(&prefix, "prefix", "", "prefix for the Host names, e.g. custos- (default none: Host TARGET)")
	return cmd
}

// writeSSHBlock replaces the marked custos block in file, or appends it
// (before any other block, at the top, since ssh uses the first value
// it finds; a Host block is self-contained, so the end is as good).
func writeSSHBlock(file, block string) error {
	old, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	s := string(old)
	if i := strings.Index(s, sshBlockBegin); i >= 0 {
		j := strings.Index(s[i:], sshBlockEnd)
		if j < 0 {
			return fmt.Errorf("%s has %q without %q: fix it by hand", file, sshBlockBegin, sshBlockEnd)
		}
		end := i + j + len(sshBlockEnd)
		if end < len(s) && s[end] == '\n' {
			end++
		}
		s = s[:i] + block + s[end:]
	} else {
		if s != "" && !strings.HasSuffix(s, "\n") {
			s += "\n"
		}
		if s != "" {
			s += "\n"
		}
		s += block
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	mode := os.FileMode(0o600)
	if st, err := os.Stat(file); err == nil {
		mode = st.Mode().Perm()
	}
	tmp := file + ".custos.tmp"
	if err := os.WriteFile(tmp, []byte(s), mode); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

func newSSHCmd(g *globals) *cobra.Command {
	var key string
	var force bool
	cmd := &cobra.Command{
		Use:   "ssh TARGET [-- SSH-ARGS...]",
		Short: "Run ssh to an SSH target through the broker, with a fresh certificate",
		Long: `Get a fresh short-lived certificate for custos's own key and run the real ssh
with the broker's host, SSH port, User TARGET and the broker's pinned host key.
Arguments after -- go to ssh (a command, -L forwards, ...). The exit status is
ssh's.`,
		Example: `  custos ssh demo-ssh
  custos ssh demo-ssh -- uptime
  custos ssh demo-ssh -- -L 8080:localhost:80`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: g.completeTargets("ssh"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() > 1 || (cmd.ArgsLenAtDash() < 0 && len(args) > 1) {
				return usageErr(errors.New("ssh: one TARGET, then -- and ssh's arguments"))
			}
			target := args[0]
			id, cert, err := g.certify(cmd.Context(), key, force)
			if err != nil {
				return fmt.Errorf("ssh: %w", err)
			}
			kh, err := cert.knownHosts()
			if err != nil {
				return fmt.Errorf("ssh: %w", err)
			}
			var sshArgs []string
			for _, o := range cert.sshOptions(id, target, kh) {
				if o[0] != "HostName" {
					sshArgs = append(sshArgs, "-o", o[0]+"="+o[1])
				}
			}
			sshArgs = append(append(sshArgs, cert.SSHHost), args[1:]...)
			c := exec.CommandContext(cmd.Context(), "ssh", sshArgs...)
			c.Stdin, c.Stdout, c.Stderr = g.stdin, g.stdout, g.stderr
			if err := c.Run(); err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					return &exitError{code: ee.ExitCode()}
				}
				return fmt.Errorf("ssh: run ssh: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "ssh-key", "", "private key to certify and use (default custos's own key in its config directory)")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing KEY-cert.pub that this broker did not issue")
	return cmd
}

package devstack

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// DefaultSSHLogin is the non-root account sshd targets let certificates log
// in as. It is created (with a home directory) when missing.
const DefaultSSHLogin = "custos-demo"

// SSHD is a running OpenSSH server on loopback that accepts only user
// certificates signed by one CA, for the login user Login.
type SSHD struct {
	Port int
	// HostKey is the server's ed25519 host key; HostKeyLine is it in
	// authorized_keys form ("ssh-ed25519 AAAA...").
	HostKey     ssh.PublicKey
	HostKeyLine string
	Login       string
	// CAPublicKeyPath is the TrustedUserCAKeys file.
	CAPublicKeyPath string
	// Dir holds sshd_config, host keys and sshd.log.
	Dir string
}

// Addr is 127.0.0.1:port.
func (s *SSHD) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.Port) }

// LogPath is sshd's log file.
func (s *SSHD) LogPath() string { return filepath.Join(s.Dir, "sshd.log") }

// StartSSHD starts a new sshd trusting user certificates signed by
// caPublicKey (authorized_keys format) for login DefaultSSHLogin. It is
// stopped by tb's cleanup. sshd runs as root to switch users; without root
// the test is skipped (fails under CI=true).
func StartSSHD(tb testing.TB, caPublicKey []byte) *SSHD {
	tb.Helper()
	return StartSSHDLogin(tb, caPublicKey, DefaultSSHLogin)
}

// StartSSHDLogin is StartSSHD for another login, created with its own home
// directory when missing: a test that changes the login's dotfiles uses a
// login of its own so other tests' shells are not affected.
func StartSSHDLogin(tb testing.TB, caPublicKey []byte, login string) *SSHD {
	tb.Helper()
	sshdPath, err := ToolPath("sshd")
	if err != nil {
		unavailable(tb, "sshd not found; install with `apt-get install -y openssh-server` or "+InstallHint)
	}
	if os.Geteuid() != 0 {
		unavailable(tb, "sshd targets need root (to switch to the login user)")
	}
	dir, err := workDir("sshd")
	if err != nil {
		tb.Fatalf("devstack: %v", err)
	}
	port, err := freePort()
	if err != nil {
		tb.Fatalf("devstack: %v", err)
	}
	s, p, err := launchSSHD(sshdOptions{sshd: sshdPath, dir: dir, port: port, caPublicKey: caPublicKey, login: login})
	if err != nil {
		tb.Fatalf("devstack: %v", err)
	}
	tb.Cleanup(func() {
		p.stop(5 * time.Second)
		unregister(p)
	})
	return s
}

type sshdOptions struct {
	sshd        string
	dir         string
	port        int
	caPublicKey []byte
	login       string
	detached    bool
	logPath     string
}

// launchSSHD writes dir/sshd_config, a host key (kept if present) and the
// trusted CA file, then starts sshd in the foreground.
func launchSSHD(o sshdOptions) (*SSHD, *process, error) {
	if _, _, _, _, err := ssh.ParseAuthorizedKey(o.caPublicKey); err != nil {
		return nil, nil, fmt.Errorf("sshd: CA public key: %w", err)
	}
	if err := ensureLoginUser(o.login); err != nil {
		return nil, nil, err
	}
	// Privilege separation needs this directory to exist, root-owned.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return nil, nil, fmt.Errorf("sshd: %w", err)
	}
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("sshd: %w", err)
	}
	hostKeyPath := filepath.Join(o.dir, "ssh_host_ed25519_key")
	hostKey, err := ensureSSHKey(hostKeyPath, "custos-dev-host")
	if err != nil {
		return nil, nil, fmt.Errorf("sshd: %w", err)
	}
	caPath := filepath.Join(o.dir, "trusted_user_ca.pub")
	if err := writeFileAtomic(caPath, o.caPublicKey, 0o644); err != nil {
		return nil, nil, fmt.Errorf("sshd: %w", err)
	}
	if o.logPath == "" {
		o.logPath = filepath.Join(o.dir, "sshd.log")
	}
	config := sshdConfig(o.port, hostKeyPath, caPath, filepath.Join(o.dir, "sshd.pid"), o.login)
	configPath := filepath.Join(o.dir, "sshd_config")
	if err := writeFileAtomic(configPath, []byte(config), 0o644); err != nil {
		return nil, nil, fmt.Errorf("sshd: %w", err)
	}
	if out, err := exec.Command(o.sshd, "-t", "-f", configPath).CombinedOutput(); err != nil {
		return nil, nil, fmt.Errorf("sshd: config test: %w\n%s", err, out)
	}
	p, err := startProcess(processSpec{
		Name:     "sshd",
		Path:     o.sshd, // sshd insists on an absolute path to re-execute
		Args:     []string{"-D", "-e", "-f", configPath},
		Dir:      o.dir,
		LogPath:  o.logPath,
		Detached: o.detached,
	})
	if err != nil {
		return nil, nil, err
	}
	s := &SSHD{
		Port:            o.port,
		HostKey:         hostKey,
		HostKeyLine:     strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostKey))),
		Login:           o.login,
		CAPublicKeyPath: caPath,
		Dir:             o.dir,
	}
	err = waitFor(p, 20*time.Second, func() error { return sshBanner(s.Addr()) })
	if err != nil {
		if !o.detached {
			p.stop(2 * time.Second)
			unregister(p)
		}
		return nil, nil, fmt.Errorf("sshd: %w", err)
	}
	return s, p, nil
}

// TargetAcceptEnv is the development target's AcceptEnv: the SSH proxy's
// default environment allow-list (TERM, LANG, LC_*) and CUSTOS_TEST_* for
// tests that check a role's env list end to end.
const TargetAcceptEnv = "TERM LANG LC_* CUSTOS_TEST_*"

// sshdConfig accepts only certificates from the trusted CA, for login only
// (the certificate's principals must name it); PTYs and SFTP work, the
// variables of TargetAcceptEnv may be set, local TCP forwarding works for
// certificates carrying permit-port-forwarding; agent, X11, remote and
// Unix-socket forwarding are off.
func sshdConfig(port int, hostKey, caPath, pidFile, login string) string {
	return fmt.Sprintf(`# Written by deploy/devstack: a Custos development SSH target.
Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
TrustedUserCAKeys %s
AuthorizedKeysFile none
AuthorizedPrincipalsFile none
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
HostbasedAuthentication no
PermitRootLogin no
AllowUsers %s
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
PermitTTY yes
X11Forwarding no
AllowAgentForwarding no
AllowTcpForwarding local
AllowStreamLocalForwarding no
AcceptEnv %s
MaxStartups 100:30:200
MaxSessions 20
LogLevel VERBOSE
Subsystem sftp internal-sftp
`, port, hostKey, pidFile, caPath, login, TargetAcceptEnv)
}

// sshBanner checks that an SSH server answers on addr.
func sshBanner(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4)
	if _, err := c.Read(buf); err != nil {
		return err
	}
	if string(buf) != "SSH-" {
		return fmt.Errorf("no SSH banner on %s", addr)
	}
	return nil
}

// ensureLoginUser creates a local account for login with a home directory
// and a usable (not locked) but password-less entry: with UsePAM no, sshd
// refuses accounts whose password field starts with "!".
func ensureLoginUser(login string) error {
	if _, err := user.Lookup(login); err != nil {
		if os.Geteuid() != 0 {
			return fmt.Errorf("sshd: login user %s does not exist and only root can create it", login)
		}
		// Test binaries run in parallel: another may hold the passwd lock
		// or have created the user meanwhile.
		var out []byte
		for try := 0; try < 20; try++ {
			out, err = exec.Command("useradd", "--create-home", "--shell", "/bin/bash", "--password", "*", login).CombinedOutput()
			if _, lerr := user.Lookup(login); lerr == nil {
				err = nil
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("sshd: useradd %s: %w\n%s", login, err, out)
		}
	}
	if os.Geteuid() == 0 && passwordLocked(login) {
		if out, err := exec.Command("usermod", "--password", "*", login).CombinedOutput(); err != nil {
			return fmt.Errorf("sshd: unlock %s: %w\n%s", login, err, out)
		}
	}
	u, err := user.Lookup(login)
	if err != nil {
		return fmt.Errorf("sshd: %w", err)
	}
	if !exists(u.HomeDir) {
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.MkdirAll(u.HomeDir, 0o755); err != nil {
			return fmt.Errorf("sshd: home of %s: %w", login, err)
		}
		if err := os.Chown(u.HomeDir, uid, gid); err != nil {
			return fmt.Errorf("sshd: home of %s: %w", login, err)
		}
	}
	return nil
}

// passwordLocked reports whether login's shadow entry is locked ("!...").
func passwordLocked(login string) bool {
	b, err := os.ReadFile("/etc/shadow")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.SplitN(line, ":", 3)
		if len(fields) >= 2 && fields[0] == login {
			return strings.HasPrefix(fields[1], "!")
		}
	}
	return false
}

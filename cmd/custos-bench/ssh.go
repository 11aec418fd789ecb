package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/ssh"
)

// sshPeer is how the ssh client reaches the target: through the broker
// (alice's key, target demo-ssh) or directly (a Vault-signed certificate).
type sshPeer struct {
	name string
	args []string // ssh options and destination
}

func (s *stack) sshPeers() (broker, direct sshPeer, err error) {
	key := filepath.Join(s.dev, "keys", "alice")
	common := []string{"-i", key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"}
	broker = sshPeer{name: "custos", args: append(append([]string{}, common...), "-p", s.env["CUSTOS_SSH_PORT"], "demo-ssh@127.0.0.1")}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		return broker, direct, err
	}
	// permit-pty, as the broker asks for it, so the direct path can run
	// the keystroke-echo scenario's terminal.
	req, _ := json.Marshal(map[string]any{"public_key": string(pub), "extensions": map[string]string{"permit-pty": ""}})
	cmd := exec.Command(filepath.Join(s.dev, "bin", "vault"), "write", "-field=signed_key", "ssh/sign/ops", "-")
	cmd.Stdin = bytes.NewReader(req)
	cmd.Env = append(os.Environ(), "VAULT_ADDR="+s.env["VAULT_ADDR"], "VAULT_TOKEN="+s.env["VAULT_TOKEN"])
	out, err := cmd.Output()
	if err != nil {
		return broker, direct, fmt.Errorf("bench: vault ssh sign: %w", err)
	}
	cert := filepath.Join(s.tmp, "alice-cert.pub")
	if err := os.WriteFile(cert, out, 0o600); err != nil {
		return broker, direct, err
	}
	direct = sshPeer{name: "direct", args: append(append([]string{}, common...), "-o", "CertificateFile="+cert,
		"-p", s.env["CUSTOS_TARGET_SSH_PORT"], s.env["CUSTOS_TARGET_SSH_LOGIN"]+"@127.0.0.1")}
	return broker, direct, nil
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// sshStream moves n bytes up (stdin → cat >/dev/null) or down (head -c)
// through one ssh session and returns MB/s (10^6 bytes) and the broker's
// CPU ticks meanwhile.
func sshStream(p sshPeer, n int64, up bool, brokerPID int) (mbps, ticks float64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	remote := "cat >/dev/null"
	if !up {
		remote = fmt.Sprintf("head -c %d /dev/zero", n)
	}
	cmd := exec.CommandContext(ctx, "ssh", append(append([]string{}, p.args...), remote)...)
	var got int64
	if up {
		cmd.Stdin = io.LimitReader(zeros{}, n)
		cmd.Stdout = io.Discard
	} else {
		pr, err := cmd.StdoutPipe()
		if err != nil {
			return 0, 0, err
		}
		defer func() {
			if got != n && err == nil {
				err = fmt.Errorf("bench: ssh down via %s: got %d of %d bytes", p.name, got, n)
			}
		}()
		before := cpuTicks(brokerPID)
		start := time.Now()
		if err := cmd.Start(); err != nil {
			return 0, 0, err
		}
		got, _ = io.Copy(io.Discard, pr)
		if err := cmd.Wait(); err != nil {
			return 0, 0, fmt.Errorf("bench: ssh via %s: %w", p.name, err)
		}
		return float64(n) / time.Since(start).Seconds() / 1e6, cpuTicks(brokerPID) - before, nil
	}
	var errb strings.Builder
	cmd.Stderr = &errb
	before := cpuTicks(brokerPID)
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, 0, fmt.Errorf("bench: ssh via %s: %w: %s", p.name, err, errb.String())
	}
	got = n
	return float64(n) / time.Since(start).Seconds() / 1e6, cpuTicks(brokerPID) - before, nil
}

// idleSSH opens n SSH sessions through the broker, each running cat with
// nothing to read, and returns a closer.
func (s *stack) idleSSH(n int) (func(), error) {
	keyPEM, err := os.ReadFile(filepath.Join(s.dev, "keys", "alice"))
	if err != nil {
		return nil, err
	}
	signer, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, err
	}
	cfg := &ssh.ClientConfig{User: "demo-ssh", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second} // loopback benchmark only
	addr := net.JoinHostPort("127.0.0.1", s.env["CUSTOS_SSH_PORT"])
	return openIdle(n, func(i int) (io.Closer, error) {
		c, err := ssh.Dial("tcp", addr, cfg)
		if err != nil {
			return nil, fmt.Errorf("bench: idle ssh %d: %w", i, err)
		}
		sess, err := c.NewSession()
		if err == nil {
			_, err = sess.StdinPipe()
		}
		if err == nil {
			err = sess.Start("cat")
		}
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("bench: idle ssh session %d: %w", i, err)
		}
		return c, nil
	})
}

// idlePG opens n PostgreSQL connections through the broker.
func (s *stack) idlePG(n int) (func(), error) {
	b, _ := s.pgPeers()
	cfg, err := pgx.ParseConfig(b.conninfo + " password=" + b.password)
	if err != nil {
		return nil, err
	}
	return openIdle(n, func(i int) (io.Closer, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("bench: idle pg %d: %w", i, err)
		}
		return pgCloser{c}, nil
	})
}

type pgCloser struct{ c *pgx.Conn }

func (p pgCloser) Close() error { return p.c.Close(context.Background()) }

// idleOpeners is how many idle connections are opened at once: enough
// that a connection's round trips (handshakes, the broker's credential
// and recording start) overlap, few enough to stay under sshd's
// MaxStartups and not to be a load test of connection setup.
const idleOpeners = 8

// openIdle opens n connections, idleOpeners at a time, and returns a
// function closing them all. When one fails, those open are closed and
// the first error is returned.
func openIdle(n int, open func(i int) (io.Closer, error)) (func(), error) {
	var (
		mu    sync.Mutex
		conns []io.Closer
		first error
		wg    sync.WaitGroup
		next  atomic.Int64
	)
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	for range min(idleOpeners, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				mu.Lock()
				failed := first != nil
				mu.Unlock()
				if failed {
					return
				}
				c, err := open(i)
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				if c != nil {
					conns = append(conns, c)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if first != nil {
		closeAll()
		return nil, first
	}
	return closeAll, nil
}

package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/crypto/ssh"
)

// Keystroke echo: an interactive session with a PTY running cat; the
// driver types one byte at a time and times until the PTY's echo of that
// byte comes back, through the broker (recorded, live view on) and
// straight to sshd. The echo comes from the remote terminal's line
// discipline, as a shell's would.

// echoKeys is the number of keystrokes per run (below the terminal's
// 4,096-byte line limit, so every byte is echoed).
func (p plan) echoKeys() int {
	if p.quick {
		return 200
	}
	return 1000
}

// sshClientConfig is alice's key (through the broker) or the key with its
// Vault-signed certificate (direct).
func (s *stack) sshClientConfig(direct bool) (cfg *ssh.ClientConfig, addr string, err error) {
	keyPEM, err := os.ReadFile(filepath.Join(s.dev, "keys", "alice"))
	if err != nil {
		return nil, "", err
	}
	signer, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, "", err
	}
	user, port := "demo-ssh", s.env["CUSTOS_SSH_PORT"]
	if direct {
		certText, err := os.ReadFile(filepath.Join(s.tmp, "alice-cert.pub")) // written by sshPeers
		if err != nil {
			return nil, "", fmt.Errorf("bench: direct certificate: %w", err)
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey(certText)
		if err != nil {
			return nil, "", fmt.Errorf("bench: direct certificate: %w", err)
		}
		cert, ok := pub.(*ssh.Certificate)
		if !ok {
			return nil, "", fmt.Errorf("bench: direct certificate: not a certificate")
		}
		if signer, err = ssh.NewCertSigner(cert, signer); err != nil {
			return nil, "", err
		}
		user, port = s.env["CUSTOS_TARGET_SSH_LOGIN"], s.env["CUSTOS_TARGET_SSH_PORT"]
	}
	cfg = &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second} // loopback benchmark only
	return cfg, net.JoinHostPort("127.0.0.1", port), nil
}

// echoLatencies opens a PTY session running cat and returns the
// keystroke-to-echo latencies in microseconds, sorted.
func (s *stack) echoLatencies(direct bool, keys int) ([]float64, error) {
	cfg, addr, err := s.sshClientConfig(direct)
	if err != nil {
		return nil, err
	}
	c, err := ssh.Dial("tcp", addr, cfg)
	if err != nil {
		return nil, fmt.Errorf("bench: echo dial: %w", err)
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	modes := ssh.TerminalModes{ssh.ECHO: 1, ssh.ICANON: 1}
	if err := sess.RequestPty("xterm", 40, 120, modes); err != nil {
		return nil, fmt.Errorf("bench: echo pty: %w", err)
	}
	in, err := sess.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := sess.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := sess.Start("cat"); err != nil {
		return nil, fmt.Errorf("bench: echo start: %w", err)
	}
	// Wait for cat to be reading: type one byte until its echo comes.
	buf := make([]byte, 64)
	if err := echoOnce(in, out, buf, 10*time.Second); err != nil {
		return nil, fmt.Errorf("bench: echo: first keystroke: %w", err)
	}
	lat := make([]float64, 0, keys)
	for i := 0; i < keys; i++ {
		start := time.Now()
		if err := echoOnce(in, out, buf, 5*time.Second); err != nil {
			return nil, fmt.Errorf("bench: echo: keystroke %d: %w", i, err)
		}
		lat = append(lat, float64(time.Since(start).Microseconds()))
		time.Sleep(2 * time.Millisecond) // a fast typist; the path idles between keys
	}
	sort.Float64s(lat)
	return lat, nil
}

// echoOnce types "x" and reads until it comes back.
func echoOnce(in io.Writer, out io.Reader, buf []byte, limit time.Duration) error {
	if _, err := in.Write([]byte{'x'}); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		for {
			n, err := out.Read(buf)
			for _, c := range buf[:n] {
				if c == 'x' {
					done <- nil
					return
				}
			}
			if err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		return fmt.Errorf("no echo within %s", limit)
	}
}

// keystrokeEcho reports the added p50 (and p99) of a keystroke's echo.
func (b *bench) keystrokeEcho() error {
	if _, _, err := b.s.sshPeers(); err != nil { // signs the direct certificate
		return err
	}
	keys := b.p.echoKeys()
	var p50, p99, c50, d50 []float64
	for i := 0; i < b.p.runs; i++ {
		cl, err := b.s.echoLatencies(false, keys)
		if err != nil {
			return err
		}
		dl, err := b.s.echoLatencies(true, keys)
		if err != nil {
			return err
		}
		c50, d50 = append(c50, percentile(cl, 0.50)/1000), append(d50, percentile(dl, 0.50)/1000)
		p50 = append(p50, (percentile(cl, 0.50)-percentile(dl, 0.50))/1000)
		p99 = append(p99, (percentile(cl, 0.99)-percentile(dl, 0.99))/1000)
	}
	scn := fmt.Sprintf("keystroke echo in a PTY (%d keys)", keys)
	b.add(newRow(scn, shared, "echo p50 via Custos", "ms", c50, nil))
	b.add(newRow(scn, shared, "echo p50 direct", "ms", d50, nil))
	r := newRow(scn, shared, "added p50", "ms", p50, atMost("≤ 0.5 ms", 0.5))
	r.Plot = "latency"
	b.add(r)
	b.add(newRow(scn, shared, "added p99", "ms", p99, nil))
	return nil
}

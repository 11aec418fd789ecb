package sshproxy

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker/config"
)

// directArgs builds ssh arguments that reach sshd without the proxy, with
// a certificate from the same CA the proxy's credentials use.
func (e *env) directArgs(args ...string) []string {
	e.t.Helper()
	key := filepath.Join(e.dir, "direct")
	if _, err := os.Stat(key); err != nil {
		b, err := os.ReadFile(e.key)
		if err != nil {
			e.t.Fatal(err)
		}
		priv, err := ssh.ParseRawPrivateKey(b)
		if err != nil {
			e.t.Fatal(err)
		}
		s, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			e.t.Fatal(err)
		}
		now := time.Now()
		cert := &ssh.Certificate{Key: s.PublicKey(), CertType: ssh.UserCert, KeyId: "direct", ValidPrincipals: []string{e.sshd.Login},
			ValidAfter: uint64(now.Add(-time.Minute).Unix()), ValidBefore: uint64(now.Add(time.Hour).Unix()),
			Permissions: ssh.Permissions{Extensions: map[string]string{"permit-pty": ""}}}
		if err := cert.SignCert(rand.Reader, e.creds.ca); err != nil {
			e.t.Fatal(err)
		}
		if err := os.WriteFile(key, b, 0o600); err != nil {
			e.t.Fatal(err)
		}
		if err := os.WriteFile(key+"-cert.pub", ssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
			e.t.Fatal(err)
		}
	}
	opts := e.sshOpts()
	opts[slices.Index(opts, e.key)] = key
	out := append([]string{"-p", strconv.Itoa(e.sshd.Port)}, opts...)
	return append(append(out, e.sshd.Login+"@127.0.0.1"), args...)
}

// timed runs a client command with stdout to /dev/null and returns how long
// it took.
func timed(tb testing.TB, name string, args ...string) time.Duration {
	tb.Helper()
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer null.Close()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = null, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		tb.Fatalf("%s: %v\n%s", name, err, stderr.String())
	}
	return time.Since(start)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

const benchRuns = 5

// compare times direct and proxied runs alternately and reports the median
// throughput of each and their ratio.
func compare(b *testing.B, bytes int64, direct, proxied func() time.Duration) {
	var d, p []time.Duration
	for range benchRuns {
		d = append(d, direct())
		p = append(p, proxied())
	}
	md, mp := median(d), median(p)
	mb := func(t time.Duration) float64 { return float64(bytes) / t.Seconds() / (1 << 20) }
	b.ReportMetric(mb(md), "direct-MiB/s")
	b.ReportMetric(mb(mp), "proxy-MiB/s")
	b.ReportMetric(md.Seconds()/mp.Seconds(), "ratio")
	b.Logf("median of %d: direct %s (%.0f MiB/s), through the proxy %s (%.0f MiB/s), ratio %.2f",
		benchRuns, md, mb(md), mp, mb(mp), md.Seconds()/mp.Seconds())
}

// BenchmarkSSHStream streams 1 GiB from the target (`head -c 1G
// /dev/zero`) with the real OpenSSH client, straight to sshd and through
// the proxy, and reports the median throughput of 5 runs each and their
// ratio. "recorded" records every byte with the broker's recorder (spooled,
// encrypted, fsynced, stored); "unrecorded" measures the relay alone.
func BenchmarkSSHStream(b *testing.B) {
	const size = 1 << 30
	cmd := fmt.Sprintf("head -c %d /dev/zero", size)
	for _, mode := range []string{"recorded", "unrecorded"} {
		b.Run(mode, func(b *testing.B) {
			var e *env
			if mode == "recorded" {
				_, rec := realRecorder(b)
				e = newEnvRecorder(b, rec)
			} else {
				e = newEnv(b)
				e.rec.DiscardData()
			}
			for range b.N {
				compare(b, size,
					func() time.Duration { return timed(b, "ssh", e.directArgs(cmd)...) },
					func() time.Duration { return timed(b, "ssh", e.sshArgs(testTarget, cmd)...) })
			}
		})
	}
}

// BenchmarkSCP uploads and downloads a 256 MiB file of random bytes with
// scp (SFTP protocol), straight and through the proxy with recording on,
// under each file-contents policy: "full" records every byte of the
// channel, "digest" the SFTP packets around the file data and the data's
// SHA-256.
func BenchmarkSCP(b *testing.B) {
	for _, policy := range []string{config.FileContentsFull, config.FileContentsDigest} {
		b.Run(policy, func(b *testing.B) {
			_, rec := realRecorder(b)
			e := newEnvRecorder(b, rec, func(c *config.Config) { c.Targets[0].Recording.FileContents = policy })
			const size = 256 << 20
			local := filepath.Join(b.TempDir(), "f.bin")
			makeFile(b, local, size)
			remote := e.remoteDir()
			back := filepath.Join(b.TempDir(), "back.bin")
			scpDirect := func(args ...string) []string {
				d := e.directArgs()
				// directArgs ends with login@host; scp wants -P and its
				// own operands.
				opts := append([]string{"-P", d[1]}, d[2:len(d)-1]...)
				return append(opts, args...)
			}
			host := e.sshd.Login + "@127.0.0.1:"
			for range b.N {
				compare(b, 2*size,
					func() time.Duration {
						return timed(b, "scp", scpDirect(local, host+remote+"/d.bin")...) +
							timed(b, "scp", scpDirect(host+remote+"/d.bin", back)...)
					},
					func() time.Duration {
						return timed(b, "scp", e.scpArgs(local, testTarget+"@127.0.0.1:"+remote+"/p.bin")...) +
							timed(b, "scp", e.scpArgs(testTarget+"@127.0.0.1:"+remote+"/p.bin", back)...)
					})
			}
		})
	}
}

// BenchmarkKeystrokeLatency types single bytes into a remote `cat` on a
// raw PTY and measures each echo, straight and through the proxy, and
// reports the p50 of each and the latency the proxy adds.
func BenchmarkKeystrokeLatency(b *testing.B) {
	_, rec := realRecorder(b)
	e := newEnvRecorder(b, rec)
	const keys = 300
	remote := "stty raw -echo; echo ready; exec cat"
	for range b.N {
		direct := echoLatencies(b, keys, append([]string{"-tt"}, e.directArgs(remote)...))
		proxied := echoLatencies(b, keys, append([]string{"-tt"}, e.sshArgs(testTarget, remote)...))
		pd, pp := median(direct), median(proxied)
		b.ReportMetric(float64(pd.Microseconds()), "direct-p50-µs")
		b.ReportMetric(float64(pp.Microseconds()), "proxy-p50-µs")
		b.ReportMetric(float64((pp - pd).Microseconds()), "added-p50-µs")
		b.Logf("keystroke echo p50: direct %s, through the proxy %s, added %s", pd, pp, pp-pd)
	}
}

// echoLatencies runs ssh, waits for "ready", then sends n single bytes one
// at a time, timing each until it is echoed.
func echoLatencies(b *testing.B, n int, args []string) []time.Duration {
	b.Helper()
	cmd := exec.Command("ssh", args...)
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		in.Close()
		cmd.Process.Kill()
		cmd.Wait()
	}()
	ready := make([]byte, 0, 64)
	buf := make([]byte, 64)
	for !bytes.Contains(ready, []byte("ready")) {
		k, err := out.Read(buf)
		if err != nil {
			b.Fatalf("before ready: %v: %s", err, stderr.String())
		}
		ready = append(ready, buf[:k]...)
	}
	time.Sleep(50 * time.Millisecond)
	lat := make([]time.Duration, 0, n)
	for i := range n {
		c := byte('a' + i%26)
		start := time.Now()
		if _, err := in.Write([]byte{c}); err != nil {
			b.Fatal(err)
		}
		for {
			k, err := out.Read(buf[:1])
			if err != nil {
				b.Fatalf("echo: %v: %s", err, stderr.String())
			}
			if k == 1 && buf[0] == c {
				break
			}
		}
		lat = append(lat, time.Since(start))
	}
	return lat
}

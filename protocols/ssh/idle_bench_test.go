package sshproxy

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// BenchmarkSSHIdleHeap holds 200 SSH sessions open through the proxy
// (recorded by the broker's recorder) and reports the proxy's Go heap and
// goroutines per idle session: what the same in-process client costs
// straight to sshd is subtracted. "idle" sessions run cat and never move a
// byte; "after-burst" ones first receive 4 MiB, then wait in cat, so the
// figure shows whether the relay gives back what the burst needed. It
// reports; it asserts nothing about size. With CUSTOS_BENCH_HEAPPROFILE=DIR
// it writes the heap and goroutine profiles taken while the sessions are held (user
// web-1: through the proxy; the target's login: direct).
func BenchmarkSSHIdleHeap(b *testing.B) {
	const n = 200
	for _, mode := range []string{"idle", "after-burst"} {
		b.Run(mode, func(b *testing.B) {
			_, rec := realRecorder(b)
			e := newEnvRecorder(b, rec)
			cmd := "cat"
			burst := int64(0)
			if mode == "after-burst" {
				burst = 4 << 20
				cmd = fmt.Sprintf("head -c %d /dev/zero; exec cat", burst)
			}
			direct := e.directClientConfig(b)
			proxied := e.clientConfig(b)
			for range b.N {
				d := heldSessions(b, n, e.sshd.Addr(), direct, cmd, burst)
				p := heldSessions(b, n, "127.0.0.1:"+strconv.Itoa(e.port), proxied, cmd, burst)
				b.ReportMetric(float64(p.heap-d.heap)/n/1024, "proxy-heap-KiB/session")
				b.ReportMetric(float64(p.stack-d.stack)/n/1024, "proxy-stack-KiB/session")
				b.ReportMetric(float64(p.goroutines-d.goroutines)/n, "proxy-goroutines/session")
			}
		})
	}
}

// held is what the process holds: live heap and goroutine stack bytes, and
// goroutines.
type held struct{ heap, stack, goroutines int64 }

func (h held) minus(o held) held {
	return held{h.heap - o.heap, h.stack - o.stack, h.goroutines - o.goroutines}
}

// heldSessions opens n sessions running cmd, waits until each has sent
// burst bytes of output, and returns what the process holds more while
// they are open.
func heldSessions(b *testing.B, n int, addr string, cfg *ssh.ClientConfig, cmd string, burst int64) held {
	b.Helper()
	before := liveHeap()
	var clients []*ssh.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	got := make([]atomic.Int64, n)
	for i := range n {
		c, err := ssh.Dial("tcp", addr, cfg)
		if err != nil {
			b.Fatalf("session %d: %v", i, err)
		}
		clients = append(clients, c)
		s, err := c.NewSession()
		if err != nil {
			b.Fatalf("session %d: %v", i, err)
		}
		if _, err := s.StdinPipe(); err != nil {
			b.Fatal(err)
		}
		s.Stdout = counter{&got[i]}
		if err := s.Start(cmd); err != nil {
			b.Fatalf("session %d: %v", i, err)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for i := range got {
		for got[i].Load() < burst {
			if time.Now().After(deadline) {
				b.Fatalf("session %d: %d of %d bytes", i, got[i].Load(), burst)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Wait until the recorder has sealed and spooled what the sessions
	// sent (an open chunk closes after 1 s): the live heap stops shrinking.
	time.Sleep(2 * time.Second)
	now := liveHeap()
	for range 30 {
		time.Sleep(time.Second)
		h := liveHeap()
		settled := h.heap+h.heap/50 >= now.heap
		now = h
		if settled {
			break
		}
	}
	if dir := os.Getenv("CUSTOS_BENCH_HEAPPROFILE"); dir != "" {
		// The heap while the sessions are held, to see what holds it:
		// go tool pprof -sample_index=inuse_space -top DIR/heap-USER.pprof
		for _, p := range []string{"heap", "goroutine"} {
			if f, err := os.Create(filepath.Join(dir, p+"-"+cfg.User+".pprof")); err == nil {
				_ = pprof.Lookup(p).WriteTo(f, 0)
				f.Close()
			}
		}
	}
	return now.minus(before)
}

type counter struct{ n *atomic.Int64 }

func (c counter) Write(p []byte) (int, error) { c.n.Add(int64(len(p))); return len(p), nil }

func liveHeap() held {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return held{int64(m.HeapAlloc), int64(m.StackInuse), int64(runtime.NumGoroutine())}
}

// clientConfig is the user's client configuration for the proxy.
func (e *env) clientConfig(tb testing.TB) *ssh.ClientConfig {
	return &ssh.ClientConfig{User: testTarget, Auth: []ssh.AuthMethod{ssh.PublicKeys(e.signer(tb, e.key))},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second} // loopback benchmark only
}

// directClientConfig reaches sshd without the proxy with the certificate
// directArgs writes.
func (e *env) directClientConfig(tb testing.TB) *ssh.ClientConfig {
	e.directArgs() // writes the key and certificate
	key := filepath.Join(e.dir, "direct")
	certLine, err := os.ReadFile(key + "-cert.pub")
	if err != nil {
		tb.Fatal(err)
	}
	pk, _, _, _, err := ssh.ParseAuthorizedKey(certLine)
	if err != nil {
		tb.Fatal(err)
	}
	cs, err := ssh.NewCertSigner(pk.(*ssh.Certificate), e.signer(tb, key))
	if err != nil {
		tb.Fatal(err)
	}
	return &ssh.ClientConfig{User: e.sshd.Login, Auth: []ssh.AuthMethod{ssh.PublicKeys(cs)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second} // loopback benchmark only
}

func (e *env) signer(tb testing.TB, file string) ssh.Signer {
	b, err := os.ReadFile(file)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

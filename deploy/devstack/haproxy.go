package devstack

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// HAProxy is a TCP load balancer in front of one backend that announces
// each client with a PROXY protocol version 2 header, as a production
// balancer in front of the broker's SSH and PostgreSQL listeners does.
type HAProxy struct {
	// Port is the frontend's port on 127.0.0.1.
	Port int
	// Source is the address the balancer connects to the backend from:
	// the address the broker must trust.
	Source string
	Dir    string
}

// Addr is the frontend's host:port.
func (h *HAProxy) Addr() string { return fmt.Sprintf("127.0.0.1:%d", h.Port) }

// LogPath is haproxy's log file.
func (h *HAProxy) LogPath() string { return filepath.Join(h.Dir, "haproxy.log") }

// StartHAProxy starts haproxy in TCP mode on a free loopback port,
// forwarding every connection to backend (host:port) with a PROXY
// protocol version 2 header (send-proxy-v2), connecting from source (a
// loopback address other than 127.0.0.1, such as 127.0.0.9, so the
// backend tells the balancer from its clients). It is stopped by tb's
// cleanup.
func StartHAProxy(tb testing.TB, backend, source string) *HAProxy {
	tb.Helper()
	path, err := ToolPath("haproxy")
	if err != nil {
		unavailable(tb, "haproxy not found; install with `apt-get install -y haproxy` or "+InstallHint)
	}
	dir, err := workDir("haproxy")
	if err != nil {
		tb.Fatalf("devstack: %v", err)
	}
	port, err := freePort()
	if err != nil {
		tb.Fatalf("devstack: %v", err)
	}
	h := &HAProxy{Port: port, Source: source, Dir: dir}
	cfg := fmt.Sprintf(`# Written by deploy/devstack: a TCP load balancer sending PROXY v2.
global
	maxconn 512
defaults
	mode tcp
	timeout connect 5s
	timeout client 10m
	timeout server 10m
frontend custos
	bind 127.0.0.1:%d
	default_backend broker
backend broker
	server broker %s send-proxy-v2 source %s
`, port, backend, source)
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		tb.Fatalf("devstack: haproxy: %v", err)
	}
	p, err := startProcess(processSpec{Name: "haproxy", Path: path, Args: []string{"-db", "-f", cfgPath},
		Dir: dir, LogPath: h.LogPath()})
	if err != nil {
		tb.Fatalf("devstack: %v", err)
	}
	tb.Cleanup(func() {
		p.stop(5 * time.Second)
		unregister(p)
	})
	// Ready once the frontend listens; the probe's own connection reaches
	// the backend as a header followed by nothing.
	if err := waitFor(p, 20*time.Second, func() error {
		c, err := net.DialTimeout("tcp", h.Addr(), time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		tb.Fatalf("devstack: haproxy: %v", err)
	}
	return h
}

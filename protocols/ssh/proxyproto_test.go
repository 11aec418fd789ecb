package sshproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/proxytrust"
	"github.com/custos-pam/custos/deploy/devstack"
	"github.com/custos-pam/custos/protocols/lifecycle"
	"github.com/custos-pam/custos/protocols/proxyproto"
)

// balancer is the load balancer's address in these tests: HAProxy
// connects to the proxy from it, and it is the only trusted proxy.
const balancer = "127.0.0.9"

// TestProxyProtocolBehindHAProxy puts the real HAProxy (send-proxy-v2)
// in front of the SSH proxy and runs OpenSSH through it from two client
// addresses (ssh -b). Each session and each refusal names its client,
// never the balancer. A client connecting directly with a PROXY header
// that claims another client's address is refused and recorded under its
// own address, and a connection from the balancer's address without a
// header is refused.
func TestProxyProtocolBehindHAProxy(t *testing.T) {
	trusted, err := proxytrust.Parse([]string{balancer})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvOptions(t, nil, func(o *Options) {
		o.ProxyProtocol = &proxyproto.Policy{Trusted: trusted, Timeout: 2 * time.Second}
	})
	lb := devstack.StartHAProxy(t, fmt.Sprintf("127.0.0.1:%d", e.port), balancer)
	through := func(from, user string, args ...string) result {
		a := e.sshArgs(user, args...)
		a[1] = strconv.Itoa(lb.Port)
		return run(t, nil, "ssh", append([]string{"-b", from}, a...)...)
	}

	if r := through("127.0.0.2", testTarget, "echo via-balancer"); r.code != 0 || !strings.Contains(r.stdout, "via-balancer") {
		t.Fatalf("ssh through HAProxy: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := hostOf(e.rec.Last(t).Header.ClientAddr); got != "127.0.0.2" {
		t.Fatalf("recording names client %q, want 127.0.0.2 (the balancer is %s)", e.rec.Last(t).Header.ClientAddr, balancer)
	}
	starts := e.audit.Wait(t, lifecycle.ActionStart, "success", 1)
	if got := hostOf(fmt.Sprint(starts[0].Details["client_addr"])); got != "127.0.0.2" {
		t.Fatalf("session.start client_addr %v, want 127.0.0.2", starts[0].Details["client_addr"])
	}

	// Refused requests (an unknown target) from two clients behind the
	// balancer are recorded under each client's address.
	for _, from := range []string{"127.0.0.3", "127.0.0.4"} {
		if r := through(from, "no-such-target", "true"); r.code == 0 {
			t.Fatal("an unknown target was reached")
		}
	}
	refused := e.audit.Wait(t, lifecycle.ActionRefused, "denied", 2)
	var clients []string
	for _, r := range refused {
		clients = append(clients, hostOf(fmt.Sprint(r.Details["client_addr"])))
	}
	if strings.Join(clients, ",") != "127.0.0.3,127.0.0.4" {
		t.Fatalf("refusals name clients %v, want 127.0.0.3 and 127.0.0.4", clients)
	}

	// The attacker, directly, claiming to be 127.0.0.3.
	forged, err := proxyproto.AppendV2(nil, proxyproto.Header{
		Source:      netip.MustParseAddrPort("127.0.0.3:40000"),
		Destination: netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", e.port)),
	})
	if err != nil {
		t.Fatal(err)
	}
	direct := fmt.Sprintf("127.0.0.1:%d", e.port)
	if reply := rawExchange(t, "127.0.0.5", direct, append(forged, "SSH-2.0-OpenSSH_9.2\r\n"...)); len(reply) != 0 {
		t.Fatalf("a forged PROXY header from an untrusted client was answered: %q", reply)
	}
	// The balancer's address without a header: OpenSSH itself.
	if r := run(t, nil, "ssh", append([]string{"-b", balancer}, e.sshArgs(testTarget, "true")...)...); r.code == 0 {
		t.Fatal("a connection from the balancer's address without a PROXY header was let in")
	}
	var forgedRefused, headerless bool
	for _, r := range e.audit.Find(lifecycle.ActionRefused) {
		addr := hostOf(fmt.Sprint(r.Details["client_addr"]))
		switch {
		case strings.Contains(r.Reason, "not a trusted proxy"):
			forgedRefused = addr == "127.0.0.5"
		case strings.Contains(r.Reason, "no valid PROXY protocol header"):
			headerless = addr == balancer
		}
	}
	if !forgedRefused || !headerless {
		t.Fatalf("refusals recorded: forged header %v, headerless balancer %v; records %+v", forgedRefused, headerless, e.audit.Find(lifecycle.ActionRefused))
	}
}

// rawExchange connects from local, writes b and returns whatever comes
// back before the connection closes.
func rawExchange(t *testing.T, local, addr string, b []byte) []byte {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	reply, err := io.ReadAll(c)
	// Closed with the client's bytes unread, the socket answers a reset.
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the connection was not closed: %v", err)
	}
	return reply
}

// hostOf is the host of a host:port.
func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

package pgproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/proxytrust"
	"github.com/custos-pam/custos/broker/store/sqlite"
	"github.com/custos-pam/custos/deploy/devstack"
	"github.com/custos-pam/custos/protocols/lifecycle"
	"github.com/custos-pam/custos/protocols/proxyproto"
	"github.com/jackc/pgx/v5/pgconn"
)

// balancer is the load balancer's address in these tests: HAProxy
// connects to the broker from it, and it is the only trusted proxy.
const balancer = "127.0.0.9"

// TestProxyProtocolBehindHAProxy puts the real HAProxy (send-proxy-v2)
// in front of the proxy and connects through it with psql and pgx. The
// session's audit record and recording name the client, not the
// balancer; failed sign-ins from two clients behind the balancer are
// throttled per client, not lumped on the balancer's address. The
// attacker's side: a client connecting directly with a PROXY header that
// claims another address is refused and recorded under its real
// address, and so is a connection from the balancer's address without a
// header.
func TestProxyProtocolBehindHAProxy(t *testing.T) {
	ctx := context.Background()
	state, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { state.Close() })
	log := audit.NewLog(state)
	const burst, n = 2, 4
	thr := audit.NewThrottle(log, audit.ThrottleOptions{Burst: burst, Window: time.Hour})
	trusted, err := proxytrust.Parse([]string{balancer})
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, func(_ *config.Target, o *Options) {
		o.Audit, o.Rejections = log, thr
		o.ProxyProtocol = &proxyproto.Policy{Trusted: trusted, Timeout: 2 * time.Second}
	})
	lb := devstack.StartHAProxy(t, fmt.Sprintf("127.0.0.1:%d", s.port), balancer)

	// psql through the balancer: a session under the client's address.
	tok, _ := s.token("alice")
	conninfo := fmt.Sprintf("host=127.0.0.1 port=%d dbname=%s user=alice sslmode=require connect_timeout=10", lb.Port, testTarget)
	if out, err := s.runPsqlConn(t, conninfo, tok, "SELECT 40 + 2 AS answer;\n"); err != nil || !strings.Contains(out, "42") {
		t.Fatalf("psql through HAProxy: %v\n%s", err, out)
	}
	s.waitNoSessions(t)
	if got := host(t, s.rec.Last(t).Header.ClientAddr); got != "127.0.0.1" {
		t.Fatalf("recording names client %q, want 127.0.0.1 (the balancer is %s)", s.rec.Last(t).Header.ClientAddr, balancer)
	}

	// Failed sign-ins from two clients behind the balancer (pgx, bound
	// to 127.0.0.2 and 127.0.0.3).
	for _, client := range []string{"127.0.0.2", "127.0.0.3"} {
		for range n {
			if err := pgxFrom(ctx, client, lb.Addr(), "cdb_forged"); err == nil {
				t.Fatal("a forged token was accepted")
			}
		}
	}
	// The attacker connects directly and claims 127.0.0.2 to frame it.
	forged, err := proxyproto.AppendV2(nil, proxyproto.Header{
		Source:      netip.MustParseAddrPort("127.0.0.2:40000"),
		Destination: netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", s.port)),
	})
	if err != nil {
		t.Fatal(err)
	}
	sslRequest := []byte{0, 0, 0, 8, 4, 210, 22, 47}
	if reply := rawExchange(t, "127.0.0.1", fmt.Sprintf("127.0.0.1:%d", s.port), append(forged, sslRequest...)); len(reply) != 0 {
		t.Fatalf("a forged PROXY header from an untrusted client was answered: %q", reply)
	}
	// The balancer's address without a header.
	if err := pgxFrom(ctx, balancer, fmt.Sprintf("127.0.0.1:%d", s.port), tok); err == nil {
		t.Fatal("a connection from the trusted balancer without a PROXY header was accepted")
	}
	if err := thr.Close(ctx); err != nil {
		t.Fatal(err)
	}

	recs := auditRecords(t, state)
	var start map[string]any
	perClient := map[string]int{}
	summaries := map[string]float64{}
	var forgedRefused, headerless bool
	for _, r := range recs {
		d := r.details
		switch {
		case r.Action == lifecycle.ActionStart:
			start = d
		case r.Action != lifecycle.ActionRefused:
		case d["summary"] == true:
			summaries[fmt.Sprint(d["source"])] = d["suppressed"].(float64)
		case strings.Contains(r.Reason, "not a trusted proxy"):
			forgedRefused = host(t, fmt.Sprint(d["client_addr"])) == "127.0.0.1"
		case strings.Contains(r.Reason, "no valid PROXY protocol header"):
			headerless = host(t, fmt.Sprint(d["client_addr"])) == balancer
		default:
			perClient[host(t, fmt.Sprint(d["client_addr"]))]++
		}
	}
	if start == nil || host(t, fmt.Sprint(start["client_addr"])) != "127.0.0.1" {
		t.Errorf("session.start client_addr %v, want the psql client 127.0.0.1", start["client_addr"])
	}
	if perClient["127.0.0.2"] != burst || perClient["127.0.0.3"] != burst || perClient[balancer] != 0 {
		t.Errorf("refusal records per client %v, want %d each for 127.0.0.2 and 127.0.0.3 and none for the balancer", perClient, burst)
	}
	if summaries["127.0.0.2"] != n-burst || summaries["127.0.0.3"] != n-burst {
		t.Errorf("throttle summaries %v, want %d suppressed for each client", summaries, n-burst)
	}
	if !forgedRefused {
		t.Error("no refusal of the forged header recorded under the attacker's real address")
	}
	if !headerless {
		t.Error("no refusal recorded for the balancer's connection without a header")
	}
}

// pgxFrom connects with pgx from a local address and closes at once.
func pgxFrom(ctx context.Context, local, addr, password string) error {
	h, p, _ := net.SplitHostPort(addr)
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s port=%s dbname=%s user=mallory password=%s sslmode=require connect_timeout=10",
		h, p, testTarget, password))
	if err != nil {
		return err
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 10 * time.Second}
	cfg.DialFunc = d.DialContext
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err == nil {
		c.Close(ctx)
	}
	return err
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

type auditRec struct {
	broker.AuditRecord
	details map[string]any
}

func auditRecords(t *testing.T, st broker.Store) []auditRec {
	t.Helper()
	var out []auditRec
	if err := st.View(context.Background(), func(tx broker.Tx) error {
		recs, err := tx.ListAudit(broker.AuditFilter{})
		for _, r := range recs {
			var d map[string]any
			_ = json.Unmarshal(r.Details, &d)
			out = append(out, auditRec{r, d})
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// host is the host of a host:port.
func host(t *testing.T, addr string) string {
	t.Helper()
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

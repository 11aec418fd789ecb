package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/custos-pam/custos/deploy/devstack"
)

// replicaPair is two brokers, a and b, on one PostgreSQL store, one MinIO
// bucket and one Vault, in front of the same PostgreSQL target and sshd.
// They share what replicas must share (the TLS certificate, the
// recording signing key); each has its own data dir and spool.
type replicaPair struct {
	a, b   *fullStack
	shared string // shared dir: TLS certificate, signing key, alice's key
}

// startReplicaPair starts the real components and the two brokers, a
// first (it creates the shared signing key), with alice, bob and sam
// signed in on both.
func startReplicaPair(t *testing.T) *replicaPair {
	t.Helper()
	pg := devstack.StartPostgres(t)
	v := devstack.StartVault(t)
	v.Bootstrap(t, pg)
	sshd := devstack.StartSSHD(t, v.SSHCAPublicKey)
	mio := devstack.StartMinIO(t)
	bucket := mio.NewLockedBucket(t)
	requireTools(t, "psql", "ssh")
	dsn := pg.DSN(pg.CreateDatabase(t, "replicas"))
	shared := t.TempDir()
	writeTLS(t, shared)
	alice := writeUserKey(t, shared, "alice")
	p := &replicaPair{shared: shared}
	start := func(name string) *fullStack {
		s := &fullStack{pg: pg, vault: v, sshd: sshd, dir: shared, alice: alice,
			sshPort: devstack.FreePort(t), pgPort: devstack.FreePort(t)}
		httpPort := devstack.FreePort(t)
		data := filepath.Join(t.TempDir(), name)
		// Both replicas have the one public URL, the balancer's, which
		// their tokens are bound to.
		cfg := "public_url: \"https://custos-replicas.test\"\n" + fmt.Sprintf(stackConfig, httpPort, s.sshPort, s.pgPort, shared,
			mio.Endpoint, bucket, v.Addr, pg.Addr(), sshd.Addr(), strings.TrimSpace(sshd.HostKeyLine), sshd.Login)
		for old, repl := range map[string]string{
			"data_dir: " + shared + "/data":                           "data_dir: " + data,
			"store: {driver: sqlite, path: " + shared + "/custos.db}": fmt.Sprintf("store: {driver: postgres, dsn: %q}", dsn),
			"  retention: 1d\n":                                       "  retention: 1d\n  signing_key: " + shared + "/recording-signing.key\n",
			"  - {name: sam, password: env:CUSTOS_E2E_PASSWORD}\n": "  - {name: sam, password: env:CUSTOS_E2E_PASSWORD}\n" +
				"  - {name: carol, password: env:CUSTOS_E2E_PASSWORD}\n",
		} {
			if !strings.Contains(cfg, old) {
				t.Fatalf("stack config has no %q", old)
			}
			cfg = strings.Replace(cfg, old, repl, 1)
		}
		b := &brokerProc{t: t, cfg: filepath.Join(t.TempDir(), "custos.yaml"), url: fmt.Sprintf("https://127.0.0.1:%d", httpPort), homes: map[string]string{}}
		if err := os.WriteFile(b.cfg, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		b.env = []string{"CUSTOS_E2E_S3_ACCESS=" + mio.AccessKey, "CUSTOS_E2E_S3_SECRET=" + mio.SecretKey,
			"CUSTOS_E2E_VAULT_TOKEN=" + v.BrokerToken, "CUSTOS_CA_CERT=" + filepath.Join(shared, "tls.crt")}
		b.start()
		t.Cleanup(func() { b.stop(syscall.SIGTERM) })
		b.login("alice", "bob", "sam")
		s.b = b
		return s
	}
	p.a = start("a")
	p.b = start("b")
	return p
}

func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			devstack.Require(t, tool, "apt-get install postgresql-client openssh-client")
		}
	}
}

// liveSession is a row of `custos sessions -o json`.
type liveSession struct {
	ID      string `json:"id"`
	GrantID string `json:"grant_id"`
	State   string `json:"state"`
	Replica string `json:"replica"`
}

// waitLive waits until b lists a live session on grantID and returns it.
func waitLive(t *testing.T, b *brokerProc, grantID string) liveSession {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		for _, s := range decode[[]liveSession](t, b.ok("sam", "sessions", "--state", "live", "-o", "json")) {
			if s.GrantID == grantID {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no live session on grant %s listed\nbroker log:\n%s", grantID, b.logs)
		}
	}
}

// liveWS opens the live view of session id on broker b as user, with the
// bearer token and the broker's own origin, as the web UI would.
func liveWS(t *testing.T, b *brokerProc, user, shared, id string) *websocket.Conn {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(shared, "tls.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: roots}, HandshakeTimeout: 10 * time.Second}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+savedToken(t, b, user))
	h.Set("Origin", b.url)
	c, res, err := d.Dial("wss"+strings.TrimPrefix(b.url, "https")+"/ws/live?session="+id, h)
	if err != nil {
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		t.Fatalf("live view of %s through %s: %v (HTTP %d)\nbroker log:\n%s", id, b.url, err, status, b.logs)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readWS reads messages until one of type typ whose JSON contains want.
func readWS(t *testing.T, c *websocket.Conn, typ, want string, timeout time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		_ = c.SetReadDeadline(deadline)
		_, raw, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("live view: waiting for %s %q: %v", typ, want, err)
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		if m["type"] == "error" {
			t.Fatalf("live view: error message %v", m["message"])
		}
		if m["type"] == typ && strings.Contains(string(raw), want) {
			return m
		}
	}
}

// TestReplicasEndToEnd runs two brokers on one store and bucket and
// checks, with the real clients, that they act as one: a request made on
// a is approved on b; a session running on a is watched and terminated
// through b; a grant revoked on b ends a session on a within a second; a
// killed mid-session leaves b serving new sessions, and on restart a's
// spool is recovered; the audit chain both wrote verifies; failed
// sign-ins split across both lock the user out of both, and the
// throttled refusal records stay bounded across both.
func TestReplicasEndToEnd(t *testing.T) {
	p := startReplicaPair(t)
	a, b := p.a, p.b
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// A request made on a is approved on b; both see the grant.
	req := decode[jsonRequest](t, a.b.ok("alice", "request", "demo-pg", "--role", "readonly", "--for", "30m", "--reason", "INC-15 replicas", "-o", "json"))
	g := decode[decided](t, b.b.ok("bob", "approve", req.ID, "-o", "json")).Grant
	if g == nil || g.State != "active" {
		t.Fatalf("approval on b of a request made on a: %+v", g)
	}
	if got := decode[jsonGrant](t, getGrantJSON(t, a.b, g.ID)); got.State != "active" {
		t.Fatalf("grant approved on b is %s on a", got.State)
	}

	// A session on a, watched and terminated through b.
	token := strings.TrimSpace(a.b.ok("alice", "db", "token", "demo-pg"))
	conn := a.pgxConn(ctx, token, "readonly")
	seen, _, done := pgTicker(ctx, conn, "watched-tick")
	s1 := waitLive(t, b.b, g.ID)
	if s1.Replica != a.b.url {
		t.Fatalf("session %s runs on %s, listed as running on %q", s1.ID, a.b.url, s1.Replica)
	}
	ws := liveWS(t, b.b, "sam", p.shared, s1.ID)
	readWS(t, ws, "meta", s1.ID, 10*time.Second)
	readWS(t, ws, "events", "watched-tick-", 10*time.Second)
	t.Logf("live view of a's session %s through b: events arrive (client at tick %d)", s1.ID, seen.Load())
	b.b.ok("sam", "sessions", "kill", s1.ID, "--reason", "INC-15 seen from replica b")
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "terminated by sam") {
			t.Fatalf("psql after a terminate through b: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("session %s on a still running 10s after it was terminated through b\nbroker a log:\n%s", s1.ID, a.b.logs)
	}
	readWS(t, ws, "end", "terminated", 10*time.Second)
	terminated := false
	for _, r := range decode[[]auditRec](t, b.b.ok("sam", "audit", "list", "--limit", "1000", "-o", "json")) {
		if r.Action == "session.terminate" && r.Outcome == "success" && r.Details["session_id"] == s1.ID {
			terminated = true
		}
	}
	if !terminated {
		t.Fatal("no session.terminate record for the session terminated through b")
	}

	// A grant revoked on b ends a session running on a within a second.
	done2 := runLongPsql(ctx, t, a.pgPort, token)
	waitStatement(ctx, t, a.pg, "select pg_sleep(40)", a.b)
	revokedAt := time.Now()
	b.b.ok("alice", "revoke", g.ID, "--reason", "INC-15 revoked on replica b")
	select {
	case out := <-done2:
		took := time.Since(revokedAt)
		t.Logf("session on a ended %v after the revoke command on b started (CLI process included)", took)
		// The broker's own message: Vault's revocation (whose SQL ends
		// the backend) waits for the proxies, so the target's own
		// "terminating connection" never wins the race.
		if !strings.Contains(out, "access revoked: INC-15 revoked on replica b") {
			t.Fatalf("psql on a after the revocation on b: %q", out)
		}
		if took > 1500*time.Millisecond {
			t.Errorf("session on a ended %v after the revocation on b, want within a second (1.5s with margin)", took)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("psql on a still running 20s after its grant was revoked on b\nbroker a log:\n%s", a.b.logs)
	}

	// a is killed mid-session: b keeps serving new sessions, and a's
	// spool is recovered when it restarts with the same data dir.
	g2 := a.grant("demo-pg", "readonly", "30m")
	token2 := strings.TrimSpace(a.b.ok("alice", "db", "token", "demo-pg"))
	conn2 := a.pgxConn(ctx, token2, "readonly")
	seen2, _, done3 := pgTicker(ctx, conn2, "killed-tick")
	s3 := waitLive(t, b.b, g2.ID)
	for deadline := time.Now().Add(20 * time.Second); seen2.Load() < 25; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("session on a not running: tick %d", seen2.Load())
		}
	}
	a.b.stop(syscall.SIGKILL)
	select {
	case err := <-done3:
		t.Logf("psql on a after a was killed: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("psql on a still running 10s after a was killed")
	}
	// b still serves: a new grant, psql and ssh through b's proxies.
	g3 := b.grant("demo-ssh", "ops", "10m")
	if out, err := sshRun(t, b.alice, b.sshPort, "demo-ssh", "echo served-by-b"); err != nil || !strings.Contains(out, "served-by-b") {
		t.Fatalf("ssh through b while a is down: %v %q\nbroker b log:\n%s", err, out, b.b.logs)
	}
	token3 := strings.TrimSpace(b.b.ok("alice", "db", "token", "demo-pg"))
	if out, err := b.psqlRole(token3, "readonly", "select 'served-by-b'"); err != nil || !strings.Contains(out, "served-by-b") {
		t.Fatalf("psql through b while a is down: %v %q\nbroker b log:\n%s", err, out, b.b.logs)
	}
	// A live session of the dead replica cannot be terminated through b
	// (its owner does not answer); b says so instead of pretending.
	if _, errs, code := b.b.run("sam", "", "sessions", "kill", s3.ID, "--reason", "owner down"); code == 0 || !strings.Contains(errs, "owner_unreachable") {
		t.Fatalf("kill of a dead replica's session through b: exit %d %q", code, errs)
	}
	a.b.start()
	var s3After liveSession
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		for _, s := range decode[[]liveSession](t, b.b.ok("sam", "sessions", "-o", "json")) {
			if s.ID == s3.ID {
				s3After = s
			}
		}
		if s3After.State == "interrupted" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a's session %s is %q 30s after a restarted\nbroker a log:\n%s", s3.ID, s3After.State, a.b.logs)
		}
	}
	if v := b.b.ok("sam", "verify", s3.ID); !strings.Contains(v, "intact") {
		t.Fatalf("verify through b of a's recovered session: %s", v)
	}
	if out := b.b.ok("sam", "export", s3.ID, "--format", "jsonl"); !strings.Contains(out, "killed-tick-") {
		t.Fatal("a's recovered recording has none of the session's statements")
	}
	_ = g3

	// One audit chain, written by both, verifies through either.
	for name, x := range map[string]*brokerProc{"a": a.b, "b": b.b} {
		if out := x.ok("sam", "audit", "verify"); !strings.Contains(out, "intact") {
			t.Fatalf("audit verify through %s: %s", name, out)
		}
	}

	// Failed sign-ins split across the replicas lock carol out of both;
	// the rate-limited refusals that follow are recorded one by one only
	// up to the throttle's burst across both. This comes last: the
	// failures also block the test's source address.
	for i, x := range []*brokerProc{a.b, b.b, a.b, b.b, a.b} {
		if _, errs, code := x.run("carol", "wrong password\n", "login", "--user", "carol", "--password-stdin"); code == 0 || !strings.Contains(errs, "login_failed") {
			t.Fatalf("wrong password %d: exit %d %q", i, code, errs)
		}
	}
	for name, x := range map[string]*brokerProc{"a": a.b, "b": b.b} {
		if _, errs, code := x.run("carol", e2ePassword+"\n", "login", "--user", "carol", "--password-stdin"); code == 0 || !strings.Contains(errs, "too_many_attempts") {
			t.Fatalf("carol's right password on %s after five failures split across replicas: exit %d %q", name, code, errs)
		}
	}
	for range 10 {
		for _, x := range []*brokerProc{a.b, b.b} {
			_, _, _ = x.run("carol", e2ePassword+"\n", "login", "--user", "carol", "--password-stdin")
		}
	}
	limited := 0
	for _, r := range decode[[]auditRec](t, b.b.ok("sam", "audit", "list", "--limit", "1000", "-o", "json")) {
		if r.Action == "auth.login" && r.Outcome == "denied" && r.Details["code"] == "too_many_attempts" && r.Details["summary"] == nil {
			limited++
		}
	}
	t.Logf("22 rate-limited sign-ins across both replicas: %d recorded one by one", limited)
	if limited != 5 {
		t.Fatalf("%d rate-limited sign-ins recorded one by one across two replicas, want the throttle's burst of 5", limited)
	}
}

package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/deploy/devstack"
)

// stackConfig wires a broker to the harness's real PostgreSQL, sshd, Vault
// and MinIO.
const stackConfig = `
listen:
  http: "127.0.0.1:%[1]d"
  ssh: "127.0.0.1:%[2]d"
  postgres: "127.0.0.1:%[3]d"
  tls_cert: %[4]s/tls.crt
  tls_key: %[4]s/tls.key
  data_dir: %[4]s/data
store: {driver: sqlite, path: %[4]s/custos.db}
recording:
  store: s3
  s3: {endpoint: "%[5]s", bucket: "%[6]s", access_key: env:CUSTOS_E2E_S3_ACCESS, secret_key: env:CUSTOS_E2E_S3_SECRET, insecure: true}
  retention: 1d
  encryption: vault
vault: {address: "%[7]s", token: env:CUSTOS_E2E_VAULT_TOKEN}
users:
  - {name: alice, password: env:CUSTOS_E2E_PASSWORD, ssh_keys: ["file:%[4]s/alice.pub"]}
  - {name: bob, password: env:CUSTOS_E2E_PASSWORD}
  - {name: sam, password: env:CUSTOS_E2E_PASSWORD}
groups:
  - {name: dbas, members: [alice]}
  - {name: approvers, members: [bob]}
  - {name: security, members: [sam]}
security_admins: [security]
targets:
  - name: demo-pg
    kind: postgres
    address: "%[8]s"
    roles:
      - name: readonly
        policy: {requesters: [dbas], approvers: [approvers], approvals: 1, max_duration: 1h, require_reason: true}
      - name: readwrite
        per_session: true
        policy: {requesters: [dbas], approvers: [approvers], approvals: 1, max_duration: 1h, require_reason: true}
  - name: demo-ssh
    kind: ssh
    address: "%[9]s"
    ssh: {host_keys: ["%[10]s"]}
    roles:
      - name: ops
        login: %[11]s
        policy: {requesters: [dbas], approvers: [approvers], approvals: 1, max_duration: 1h, require_reason: true}
`

// TestFullStack drives the broker end to end with the real clients: a grant
// approved through the CLI, psql and ssh through the proxies with
// credentials from Vault, recordings in MinIO under Object Lock, verify, and
// revocation closing a live session.
func TestFullStack(t *testing.T) {
	st := startFullStack(t, stackOptions{})
	pg, sshd, dir, alice, sshPort, pgPort, b := st.pg, st.sshd, st.dir, st.alice, st.sshPort, st.pgPort, st.b

	// The web UI is served by the same binary, under a strict CSP.
	resp, err := readyClient.Get(b.url + "/ui/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); resp.StatusCode != 200 || csp == "" || strings.Contains(csp, "unsafe-inline") {
		t.Fatalf("GET /ui/login: %d, CSP %q", resp.StatusCode, csp)
	}

	// No grant: the SSH banner says why and what to run.
	out, _ := sshRun(t, alice, sshPort, "demo-ssh", "true")
	if !strings.Contains(out, "no active grant for demo-ssh") || !strings.Contains(out, "custos request demo-ssh") {
		t.Fatalf("ssh without grant: want the banner, got %q", out)
	}
	// No grant: no connection token either.
	b.refused("alice", "no_active_grant", "db", "token", "demo-pg")

	// PostgreSQL: approved grant → connection token → psql through the proxy
	// logs in upstream as a Vault-issued user.
	pgReq := decode[jsonRequest](t, b.ok("alice", "request", "demo-pg", "--role", "readonly", "--for", "10m", "--reason", "INC-7", "-o", "json"))
	pgGrant := decode[decided](t, b.ok("bob", "approve", pgReq.ID, "-o", "json")).Grant
	token := strings.TrimSpace(b.ok("alice", "db", "token", "demo-pg"))
	psql := func(ctx context.Context, sql string) (string, error) {
		cmd := exec.CommandContext(ctx, "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1",
			fmt.Sprintf("host=127.0.0.1 port=%d dbname=demo-pg user=alice sslmode=require", pgPort), "-c", sql)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+token, "PGCONNECT_TIMEOUT=10")
		o, err := cmd.CombinedOutput()
		return string(o), err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := psql(ctx, "select current_user || ' ' || (6*7)")
	if err != nil || !strings.HasSuffix(strings.TrimSpace(got), " 42") || strings.HasPrefix(got, "alice ") {
		t.Fatalf("psql through the broker: %v: %q\nbroker log:\n%s", err, got, b.logs)
	}
	if strings.Contains(b.logs.String(), token) {
		t.Fatal("the connection token appears in the broker log")
	}

	// SSH: approved grant → the real ssh client through the proxy, upstream
	// with a per-session Vault certificate.
	sshReq := decode[jsonRequest](t, b.ok("alice", "request", "demo-ssh", "--role", "ops", "--for", "10m", "--reason", "INC-8", "-o", "json"))
	b.ok("bob", "approve", sshReq.ID)
	out, err = sshRun(t, alice, sshPort, "demo-ssh", "echo hello-$((6*7)); whoami")
	if err != nil || !strings.Contains(out, "hello-42") || !strings.Contains(out, sshd.Login) {
		t.Fatalf("ssh through the broker: %v: %q\nbroker log:\n%s", err, out, b.logs)
	}
	if _, err := sshRun(t, alice, sshPort, "demo-ssh", "exit 3"); exitCode(err) != 3 {
		t.Fatalf("exit status not preserved: %v", err)
	}
	// A key registered nowhere works once the broker's user CA certified
	// it (custos login --ssh), and not before.
	laptop := writeUserKey(t, dir, "laptop")
	if _, err := sshRun(t, laptop, sshPort, "demo-ssh", "true"); err == nil {
		t.Fatal("an unregistered key got in")
	}
	if _, errs, code := b.run("alice", e2ePassword+"\n", "login", "--user", "alice", "--password-stdin", "--ssh", "--ssh-key", laptop); code != 0 {
		t.Fatalf("login --ssh: %s", errs)
	}
	// The certificate cannot be revoked, so it is short: auth.ssh_cert_ttl
	// defaults to five minutes (plus a minute of clock skew before).
	if raw, err := os.ReadFile(laptop + "-cert.pub"); err != nil {
		t.Fatal(err)
	} else if k, _, _, _, err := ssh.ParseAuthorizedKey(raw); err != nil {
		t.Fatal(err)
	} else if c, ok := k.(*ssh.Certificate); !ok || time.Until(time.Unix(int64(c.ValidBefore), 0)) > 5*time.Minute {
		t.Fatalf("certificate from login --ssh is not a certificate valid at most 5m: %T", k)
	}
	if out, err := sshRun(t, laptop, sshPort, "demo-ssh", "echo via-cert"); err != nil || !strings.Contains(out, "via-cert") {
		t.Fatalf("ssh with the broker certificate: %v %q", err, out)
	}
	checkSSHTooling(t, b, sshd.Login, laptop)

	// Both sessions are listed, searchable, and verify intact in MinIO
	// under COMPLIANCE retention once closed.
	sessions := waitSessions(t, b, 4)
	for _, s := range sessions {
		v := b.ok("sam", "verify", s.ID)
		if !strings.Contains(v, "intact") || !strings.Contains(v, "COMPLIANCE") {
			t.Errorf("verify %s (%s): %s", s.ID, s.Protocol, v)
		}
	}
	found := decode[[]session](t, b.ok("sam", "sessions", "--contains", "hello-$((6*7))", "-o", "json"))
	if len(found) != 1 || found[0].Protocol != "ssh" {
		t.Errorf("search for the ssh command: %+v", found)
	}
	found = decode[[]session](t, b.ok("sam", "sessions", "--contains", "current_user", "-o", "json"))
	if len(found) != 1 || found[0].Protocol != "postgres" {
		t.Errorf("search for the SQL: %+v", found)
	}
	events := b.ok("alice", "export", found[0].ID, "--format", "jsonl")
	if !strings.Contains(events, "current_user") {
		t.Errorf("exported events lack the query: %.300s", events)
	}

	// Revoking the grant ends a running psql within a second, with the reason.
	long, cancelLong := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelLong()
	done := make(chan string, 1)
	go func() { o, _ := psql(long, "select pg_sleep(20)"); done <- o }()
	time.Sleep(1500 * time.Millisecond)
	revokedAt := time.Now()
	b.ok("alice", "revoke", pgGrant.ID, "--reason", "work done")
	select {
	case o := <-done:
		if !strings.Contains(o, "access revoked") {
			t.Errorf("psql after revoke: %q", o)
		}
		if d := time.Since(revokedAt); d > 2*time.Second {
			t.Errorf("session closed %v after revoke", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("psql still running 10s after revoke")
	}
	if _, err := psql(ctx, "select 1"); err == nil {
		t.Fatal("connected after the grant was revoked")
	}

	// A per-session role (the readonly grant is over now): the session's
	// own Vault user is gone from the target once the session ends, while
	// the grant goes on.
	rwReq := decode[jsonRequest](t, b.ok("alice", "request", "demo-pg", "--role", "readwrite", "--for", "10m", "--reason", "INC-9", "-o", "json"))
	b.ok("bob", "approve", rwReq.ID)
	rwToken := strings.TrimSpace(b.ok("alice", "db", "token", "demo-pg"))
	rwUser := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1",
			fmt.Sprintf("host=127.0.0.1 port=%d dbname=demo-pg user=alice sslmode=require", pgPort), "-c", "select session_user")
		cmd.Env = append(os.Environ(), "PGPASSWORD="+rwToken, "PGCONNECT_TIMEOUT=10")
		o, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(o), "readwrite") {
			t.Fatalf("psql as readwrite: %v: %q\nbroker log:\n%s", err, o, b.logs)
		}
		return strings.TrimSpace(string(o))
	}
	first := rwUser()
	waitRoleGone(t, pg, first)
	if second := rwUser(); second == first {
		t.Fatalf("a per-session role reused the login %q", first)
	}

	// Holding grants for two roles of one target, the user picks one.
	roReq := decode[jsonRequest](t, b.ok("alice", "request", "demo-pg", "--role", "readonly", "--for", "10m", "--reason", "INC-10", "-o", "json"))
	b.ok("bob", "approve", roReq.ID)
	for _, role := range []string{"readonly", "readwrite"} {
		out := b.ok("alice", "db", "connect", "demo-pg", "--role", role, "--", "-X", "-At", "-c", "select session_user")
		if !strings.Contains(out, "-"+role+"-") {
			t.Fatalf("db connect --role %s logged in as %q", role, out)
		}
	}
	out = b.ok("sam", "audit", "verify")
	if !strings.Contains(out, "intact") {
		t.Fatalf("audit verify: %s", out)
	}
}

// fullStack is a broker on the real PostgreSQL target, sshd, Vault and
// MinIO (stackConfig), with alice, bob and sam signed in and alice's SSH
// key written.
type fullStack struct {
	b               *brokerProc
	pg              *devstack.Postgres
	vault           *devstack.Vault
	sshd            *devstack.SSHD
	dir             string
	alice           string // alice's private key file
	sshPort, pgPort int
}

// stackOptions change a full stack's broker before it starts.
type stackOptions struct {
	// vaultAddr is the Vault address the broker is given. Default: the
	// harness's Vault itself.
	vaultAddr func(v *devstack.Vault) string
	// extra is appended to the config.
	extra string
	// minio is the object store. Default: the harness's shared MinIO.
	minio *devstack.MinIO
	// recording is added to the recording section, one "key: value"
	// per line.
	recording string
	// edit, when set, rewrites the config text last.
	edit func(cfg string) string
	// bin is the broker binary. Default: custosBin.
	bin string
	// env is added to the broker's environment.
	env []string
}

// startFullStack starts the real components and a broker wired to them.
func startFullStack(t *testing.T, o stackOptions) *fullStack {
	t.Helper()
	pg := devstack.StartPostgres(t)
	v := devstack.StartVault(t)
	v.Bootstrap(t, pg)
	sshd := devstack.StartSSHD(t, v.SSHCAPublicKey)
	mio := o.minio
	if mio == nil {
		mio = devstack.StartMinIO(t)
	}
	bucket := mio.NewLockedBucket(t)
	for _, tool := range []string{"psql", "ssh"} {
		if _, err := exec.LookPath(tool); err != nil {
			devstack.Require(t, tool, "apt-get install postgresql-client openssh-client")
		}
	}
	addr := v.Addr
	if o.vaultAddr != nil {
		addr = o.vaultAddr(v)
	}
	dir := t.TempDir()
	writeTLS(t, dir)
	s := &fullStack{pg: pg, vault: v, sshd: sshd, dir: dir, alice: writeUserKey(t, dir, "alice"),
		sshPort: devstack.FreePort(t), pgPort: devstack.FreePort(t)}
	httpPort := devstack.FreePort(t)
	cfg := fmt.Sprintf(stackConfig, httpPort, s.sshPort, s.pgPort, dir, mio.Endpoint, bucket, addr,
		pg.Addr(), sshd.Addr(), strings.TrimSpace(sshd.HostKeyLine), sshd.Login) + o.extra
	for _, line := range strings.Split(strings.TrimSpace(o.recording), "\n") {
		if line != "" {
			cfg = strings.Replace(cfg, "\n  encryption: vault\n", "\n  encryption: vault\n  "+strings.TrimSpace(line)+"\n", 1)
		}
	}
	if o.edit != nil {
		cfg = o.edit(cfg)
	}
	b := &brokerProc{t: t, cfg: filepath.Join(dir, "custos.yaml"), url: fmt.Sprintf("https://127.0.0.1:%d", httpPort), homes: map[string]string{},
		bin: o.bin}
	if err := os.WriteFile(b.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	b.env = []string{"CUSTOS_E2E_S3_ACCESS=" + mio.AccessKey, "CUSTOS_E2E_S3_SECRET=" + mio.SecretKey,
		"CUSTOS_E2E_VAULT_TOKEN=" + v.BrokerToken, "CUSTOS_CA_CERT=" + filepath.Join(dir, "tls.crt")}
	b.env = append(b.env, o.env...)
	b.start()
	t.Cleanup(func() { b.stop(15) })
	b.login("alice", "bob", "sam")
	s.b = b
	return s
}

// waitRoleGone waits until the target has no role named name: Vault's
// revocation statements drop it when the lease is revoked.
func waitRoleGone(t *testing.T, pg *devstack.Postgres, name string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := pgx.Connect(ctx, pg.DSN("postgres"))
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		var n int
		err = c.QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname = $1", name).Scan(&n)
		c.Close(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("role %s still exists after its session ended", name)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type session struct {
	ID       string `json:"id"`
	Protocol string `json:"protocol"`
	State    string `json:"state"`
}

// waitSessions waits until n sessions are listed and none is live.
func waitSessions(t *testing.T, b *brokerProc, n int) []session {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ss := decode[[]session](t, b.ok("sam", "sessions", "-o", "json"))
		live := 0
		for _, s := range ss {
			if s.State == "live" {
				live++
			}
		}
		if len(ss) >= n && live == 0 {
			return ss
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessions: want %d closed, have %+v\nbroker log:\n%s", n, ss, b.logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func sshRun(t *testing.T, key string, port int, user, command string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", "-i", key, "-p", fmt.Sprint(port), "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		user+"@127.0.0.1", command)
	o, err := cmd.CombinedOutput()
	return string(o), err
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err == nil {
		return 0
	}
	return -1
}

func writeUserKey(t *testing.T, dir, name string) string {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, name)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	spub, _ := ssh.NewPublicKey(pub)
	if err := os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(spub), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeTLS(t *testing.T, dir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "custos test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	_ = os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
}

package devstack

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"
	"golang.org/x/crypto/ssh"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestPostgres(t *testing.T) {
	pg := StartPostgres(t)
	db := pg.CreateDatabase(t, "Harness-Test")
	if !strings.HasPrefix(db, "harness_test_") {
		t.Fatalf("database name %q does not carry the prefix", db)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var version, current string
	var super bool
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num'), current_database(), usesuper FROM pg_user WHERE usename = current_user").Scan(&version, &current, &super); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(version, "15") || current != db || !super {
		t.Fatalf("server %s, database %s, superuser %v; want 15xxxx, %s, true", version, current, super, db)
	}

	// TLS with full verification against the harness CA.
	tlsDSN := strings.Replace(pg.DSN(db), "sslmode=disable", "sslmode=verify-full&sslrootcert="+pg.CACertPath, 1)
	tconn, err := pgx.Connect(ctx, tlsDSN)
	if err != nil {
		t.Fatalf("tls connect: %v", err)
	}
	defer tconn.Close(ctx)
	var ssl bool
	if err := tconn.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
		t.Fatalf("connection not encrypted: ssl=%v err=%v", ssl, err)
	}

	// Password auth is enforced.
	bad := *pg
	bad.Password = "wrong"
	if c, err := pgx.Connect(ctx, bad.DSN(db)); err == nil {
		c.Close(ctx)
		t.Fatal("connected with a wrong password")
	}

	// Shared: a second call returns the same server.
	if again := StartPostgres(t); again != pg {
		t.Fatal("StartPostgres started a second server")
	}
}

// newCA returns an SSH CA signer and its public key in authorized_keys form.
func newCA(t *testing.T) (ssh.Signer, []byte) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return signer, ssh.MarshalAuthorizedKey(signer.PublicKey())
}

// userCert makes a key pair and a certificate for principal signed by ca.
func userCert(t *testing.T, ca ssh.Signer, principal string) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cert := &ssh.Certificate{
		Key:             key.PublicKey(),
		CertType:        ssh.UserCert,
		KeyId:           "devstack-test",
		ValidPrincipals: []string{principal},
		ValidAfter:      uint64(time.Now().Add(-time.Minute).Unix()),
		ValidBefore:     uint64(time.Now().Add(10 * time.Minute).Unix()),
		Permissions:     ssh.Permissions{Extensions: map[string]string{"permit-pty": ""}},
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	cs, err := ssh.NewCertSigner(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// runSSH logs in with signer and runs cmd, checking the host key.
func runSSH(s *SSHD, login string, signer ssh.Signer, cmd string) (string, error) {
	client, err := ssh.Dial("tcp", s.Addr(), &ssh.ClientConfig{
		User:            login,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(s.HostKey),
		Timeout:         10 * time.Second,
	})
	if err != nil {
		return "", err
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return "", err
	}
	defer sess.Close()
	out, err := sess.CombinedOutput(cmd)
	return string(out), err
}

func TestSSHD(t *testing.T) {
	ca, caPub := newCA(t)
	s := StartSSHD(t, caPub)
	if s.Login != DefaultSSHLogin || s.HostKeyLine == "" || !strings.HasPrefix(s.HostKeyLine, "ssh-ed25519 ") {
		t.Fatalf("unexpected SSHD %+v", s)
	}
	out, err := runSSH(s, s.Login, userCert(t, ca, s.Login), "id -un")
	if err != nil {
		t.Fatalf("certificate login: %v\n%s\nsshd log:\n%s", err, out, logTail(s.LogPath(), 20))
	}
	if strings.TrimSpace(out) != s.Login {
		t.Fatalf("ran as %q, want %q", out, s.Login)
	}

	// A certificate from another CA, a certificate for another principal
	// and a plain key are all refused.
	other, _ := newCA(t)
	if _, err := runSSH(s, s.Login, userCert(t, other, s.Login), "true"); err == nil {
		t.Error("certificate from an untrusted CA accepted")
	}
	if _, err := runSSH(s, s.Login, userCert(t, ca, "someone-else"), "true"); err == nil {
		t.Error("certificate for another principal accepted")
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	plain, _ := ssh.NewSignerFromKey(priv)
	if _, err := runSSH(s, s.Login, plain, "true"); err == nil {
		t.Error("plain key accepted")
	}

	// Each call starts its own server.
	_, caPub2 := newCA(t)
	s2 := StartSSHD(t, caPub2)
	if s2.Port == s.Port || s2.Dir == s.Dir {
		t.Fatal("StartSSHD reused a server")
	}
}

func TestMinIO(t *testing.T) {
	m := StartMinIO(t)
	bucket := m.NewLockedBucket(t)
	c, err := m.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	enabled, _, _, _, err := c.GetObjectLockConfig(ctx, bucket)
	if err != nil || enabled != "Enabled" {
		t.Fatalf("object lock %q, %v", enabled, err)
	}
	mode := minio.Compliance
	info, err := c.PutObject(ctx, bucket, "chunk-0001", bytes.NewReader([]byte("recorded bytes")), 14, minio.PutObjectOptions{
		Mode:            mode,
		RetainUntilDate: time.Now().Add(time.Hour),
	})
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	obj, err := c.GetObject(ctx, bucket, "chunk-0001", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj)
	if err != nil || string(got) != "recorded bytes" {
		t.Fatalf("get: %q, %v", got, err)
	}
	// Compliance mode: the locked version cannot be deleted.
	err = c.RemoveObject(ctx, bucket, "chunk-0001", minio.RemoveObjectOptions{VersionID: info.VersionID})
	if err == nil {
		t.Fatal("deleted an object under compliance retention")
	}
}

// vaultCall does one Vault HTTP API call and decodes the response's data.
func vaultCall(t *testing.T, v *Vault, token, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, v.Addr+"/v1/"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Vault-Token", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestVault(t *testing.T) {
	v := StartVault(t)
	if err := v.healthy(); err != nil {
		t.Fatal(err)
	}
	pg := StartPostgres(t)
	v.Bootstrap(t, pg)
	v.Bootstrap(t, pg) // idempotent
	if v.BrokerToken == "" || !bytes.HasPrefix(v.SSHCAPublicKey, []byte("ssh-ed25519 ")) {
		t.Fatalf("bootstrap output: token set %v, CA %q", v.BrokerToken != "", v.SSHCAPublicKey)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("database", func(t *testing.T) {
		for _, role := range []string{"readonly", "readwrite"} {
			code, out := vaultCall(t, v, v.Token, "GET", "database/creds/"+role, nil) // the broker reads them with a per-grant token (broker/creds/vault)
			if code != http.StatusOK {
				t.Fatalf("creds/%s: %d %v", role, code, out)
			}
			data := out["data"].(map[string]any)
			login := *pg
			login.User, login.Password = data["username"].(string), data["password"].(string)
			conn, err := pgx.Connect(ctx, login.DSN("postgres"))
			if err != nil {
				t.Fatalf("%s login: %v", role, err)
			}
			_, err = conn.Exec(ctx, "CREATE TABLE devstack_probe (x int)")
			if role == "readonly" && err == nil {
				t.Error("readonly could create a table")
			}
			if role == "readwrite" && err != nil {
				t.Errorf("readwrite could not create a table: %v", err)
			}
			// Revocation terminates the session and drops the role.
			code, out = vaultCall(t, v, v.BrokerToken, "PUT", "sys/leases/revoke/"+out["lease_id"].(string), nil)
			if code != http.StatusNoContent && code != http.StatusOK {
				t.Fatalf("revoke: %d %v", code, out)
			}
			if err := conn.Ping(ctx); err == nil {
				t.Errorf("%s session survived revocation", role)
			}
			conn.Close(ctx)
			if c, err := pgx.Connect(ctx, login.DSN("postgres")); err == nil {
				c.Close(ctx)
				t.Errorf("%s login works after revocation", role)
			}
		}
	})

	t.Run("ssh", func(t *testing.T) {
		s := StartSSHD(t, v.SSHCAPublicKey)
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		key, _ := ssh.NewSignerFromKey(priv)
		code, out := vaultCall(t, v, v.BrokerToken, "PUT", "ssh/sign/ops", map[string]any{
			"public_key":       string(ssh.MarshalAuthorizedKey(key.PublicKey())),
			"valid_principals": s.Login,
			"key_id":           "alice/grant-1/session-1",
			"ttl":              "5m",
		})
		if code != http.StatusOK {
			t.Fatalf("sign: %d %v", code, out)
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(out["data"].(map[string]any)["signed_key"].(string)))
		if err != nil {
			t.Fatal(err)
		}
		cert := pub.(*ssh.Certificate)
		if cert.KeyId != "alice/grant-1/session-1" {
			t.Errorf("key id %q", cert.KeyId)
		}
		cs, err := ssh.NewCertSigner(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		got, err := runSSH(s, s.Login, cs, "id -un")
		if err != nil || strings.TrimSpace(got) != s.Login {
			t.Fatalf("login with a Vault-signed certificate: %q %v\n%s", got, err, logTail(s.LogPath(), 20))
		}
		// The role signs for the login user only.
		code, _ = vaultCall(t, v, v.BrokerToken, "PUT", "ssh/sign/ops", map[string]any{
			"public_key":       string(ssh.MarshalAuthorizedKey(key.PublicKey())),
			"valid_principals": "root",
		})
		if code == http.StatusOK {
			t.Error("ops role signed a certificate for root")
		}
	})

	t.Run("transit", func(t *testing.T) {
		code, out := vaultCall(t, v, v.BrokerToken, "PUT", "transit/datakey/wrapped/custos-recordings", map[string]any{})
		if code != http.StatusOK {
			t.Fatalf("datakey: %d %v", code, out)
		}
		wrapped := out["data"].(map[string]any)["ciphertext"].(string)
		code, out = vaultCall(t, v, v.BrokerToken, "PUT", "transit/decrypt/custos-recordings", map[string]any{"ciphertext": wrapped})
		if code != http.StatusOK || out["data"].(map[string]any)["plaintext"] == "" {
			t.Fatalf("decrypt: %d %v", code, out)
		}
	})

	t.Run("least privilege", func(t *testing.T) {
		for _, c := range []struct{ method, path string }{
			{"PUT", "sys/policy/custos-broker"},
			{"GET", "database/config/demo-pg"},
			{"PUT", "transit/keys/other"},
			{"PUT", "auth/token/create"},
			{"LIST", "secret/metadata/"},
		} {
			code, _ := vaultCall(t, v, v.BrokerToken, c.method, c.path, map[string]any{})
			if code != http.StatusForbidden {
				t.Errorf("%s %s: got %d, want 403", c.method, c.path, code)
			}
		}
	})
}

func TestToolPath(t *testing.T) {
	dir := t.TempDir()
	tool := filepath.Join(dir, "custos-fake-tool")
	if err := os.WriteFile(tool, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CUSTOS_TOOLS_BIN", dir)
	if got, err := ToolPath("custos-fake-tool"); err != nil || got != tool {
		t.Fatalf("ToolPath = %q, %v", got, err)
	}
	if _, err := ToolPath("custos-no-such-tool"); err == nil {
		t.Fatal("found a tool that does not exist")
	}
	if root := RepoRoot(); !exists(filepath.Join(root, "deploy", "vault", "bootstrap.sh")) {
		t.Fatalf("RepoRoot %s has no deploy/vault/bootstrap.sh", root)
	}
}

// TestStopKillsDescendants checks that a component's children, even ones
// that started a session of their own, die with it.
func TestStopKillsDescendants(t *testing.T) {
	dir := t.TempDir()
	p, err := startProcess(processSpec{
		Name:    "tree",
		Path:    "/bin/sh",
		Args:    []string{"-c", "setsid sleep 300 & sleep 300 & wait"},
		LogPath: filepath.Join(dir, "tree.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	var kids []int
	deadline := time.Now().Add(5 * time.Second)
	for len(kids) < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		kids = descendantsOf(p.pid)
	}
	if len(kids) < 2 {
		t.Fatalf("children %v", kids)
	}
	p.stop(2 * time.Second)
	unregister(p)
	for _, k := range append(kids, p.pid) {
		if alive(k) {
			t.Errorf("pid %d survived stop", k)
		}
	}
}

func TestRenderConfig(t *testing.T) {
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "in.yaml")
	out := filepath.Join(dir, "out.yaml")
	os.WriteFile(tmpl, []byte("# each ${VAR} is replaced\nhttp: 127.0.0.1:${CUSTOS_HTTP_PORT}\nurl: $CUSTOS_URL\n"), 0o644)
	if err := renderConfig(tmpl, out, map[string]string{"CUSTOS_HTTP_PORT": "8443", "CUSTOS_URL": "https://x"}); err != nil {
		t.Fatal(err)
	}
	if got := readFileString(out); got != "# each ${VAR} is replaced\nhttp: 127.0.0.1:8443\nurl: https://x" {
		t.Fatalf("rendered %q", got)
	}
	err := renderConfig(tmpl, out, map[string]string{"CUSTOS_HTTP_PORT": "8443"})
	if err == nil || !strings.Contains(err.Error(), "CUSTOS_URL") {
		t.Fatalf("missing variable not reported: %v", err)
	}
}

func TestDevTLS(t *testing.T) {
	f, err := ensureDevTLS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(f.ServerCert, f.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(f.CACert)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	for _, name := range []string{"localhost", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	// Reused when still valid.
	before, _ := os.ReadFile(f.ServerCert)
	if _, err := ensureDevTLS(filepath.Dir(f.CACert)); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(f.ServerCert)
	if !bytes.Equal(before, after) {
		t.Error("valid certificate regenerated")
	}
}

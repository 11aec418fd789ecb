package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/deploy/devstack"
)

// ownershipConfig is a broker with one PostgreSQL target whose readwrite
// role logs in with Vault's dynamic role of the same name.
const ownershipConfig = `
listen:
  http: "127.0.0.1:%[1]d"
  postgres: "127.0.0.1:%[2]d"
  tls_cert: %[3]s/tls.crt
  tls_key: %[3]s/tls.key
  data_dir: %[3]s/data
store: {driver: sqlite, path: %[3]s/custos.db}
recording: {store: local, dir: %[3]s/recordings, retention: 1d}
vault: {address: "%[4]s", token: env:CUSTOS_E2E_VAULT_TOKEN}
users:
  - {name: alice, password: env:CUSTOS_E2E_PASSWORD}
  - {name: bob, password: env:CUSTOS_E2E_PASSWORD}
groups:
  - {name: dbas, members: [alice]}
  - {name: approvers, members: [bob]}
targets:
  - name: demo-pg
    kind: postgres
    address: "%[5]s"
    roles:
      - name: readwrite
        policy: {requesters: [dbas], approvers: [approvers], approvals: 1, max_duration: 1h, require_reason: true}
`

// TestTableOutlivesTheGrant: a table a DBA creates through the broker under
// one grant is altered and dropped under the next one, although each grant
// logs in as its own Vault user and the first one's is dropped at
// revocation. Without the stable owner role the second grant fails with
// "must be owner of table".
func TestTableOutlivesTheGrant(t *testing.T) {
	if _, err := exec.LookPath("psql"); err != nil {
		devstack.Require(t, "psql", "apt-get install postgresql-client")
	}
	pg := devstack.StartPostgres(t)
	v := devstack.StartVault(t)
	v.Bootstrap(t, pg)

	dir := t.TempDir()
	writeTLS(t, dir)
	httpPort, pgPort := devstack.FreePort(t), devstack.FreePort(t)
	cfg := filepath.Join(dir, "custos.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(ownershipConfig, httpPort, pgPort, dir, v.Addr, pg.Addr())), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &brokerProc{t: t, cfg: cfg, url: fmt.Sprintf("https://127.0.0.1:%d", httpPort), homes: map[string]string{},
		env: []string{"CUSTOS_E2E_VAULT_TOKEN=" + v.BrokerToken, "CUSTOS_CA_CERT=" + filepath.Join(dir, "tls.crt")}}
	b.start()
	t.Cleanup(func() { b.stop(15) })
	b.login("alice", "bob")

	// grant asks for and approves a readwrite grant and returns its ID and
	// a connection token for it.
	grant := func(reason string) (id, token string) {
		req := decode[jsonRequest](t, b.ok("alice", "request", "demo-pg", "--role", "readwrite", "--for", "10m", "--reason", reason, "-o", "json"))
		g := decode[decided](t, b.ok("bob", "approve", req.ID, "-o", "json")).Grant
		if g == nil {
			t.Fatalf("request %s approved without a grant", req.ID)
		}
		return g.ID, strings.TrimSpace(b.ok("alice", "db", "token", "demo-pg"))
	}
	psql := func(token string, sql ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		args := []string{"-X", "-At", "-v", "ON_ERROR_STOP=1",
			fmt.Sprintf("host=127.0.0.1 port=%d dbname=demo-pg user=alice sslmode=require", pgPort)}
		for _, s := range sql {
			args = append(args, "-c", s)
		}
		cmd := exec.CommandContext(ctx, "psql", args...)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+token, "PGCONNECT_TIMEOUT=10")
		o, err := cmd.CombinedOutput()
		return string(o), err
	}

	today, token := grant("INC-20 today")
	out, err := psql(token,
		"select session_user || ' as ' || current_user",
		"create table made_today (id int primary key)",
		"insert into made_today values (1)",
		// Even as the login itself, what it leaves is handed on at revocation.
		"set role none",
		"create table made_as_login (id int)")
	if err != nil {
		t.Fatalf("first grant: %v: %s\nbroker log:\n%s", err, out, b.logs)
	}
	login, runsAs, _ := strings.Cut(strings.SplitN(out, "\n", 2)[0], " as ")
	if !strings.Contains(login, "-readwrite-") || runsAs != "custos_readwrite" {
		t.Fatalf("first grant logged in as %q running as %q, want a Vault login running as custos_readwrite", login, runsAs)
	}
	b.ok("alice", "revoke", today, "--reason", "done for today")
	waitRoleGone(t, pg, login)

	_, token = grant("INC-20 tomorrow")
	out, err = psql(token,
		"alter table made_today add column note text",
		"update made_today set note = 'altered'",
		"drop table made_today",
		"alter table made_as_login rename to renamed",
		"drop table renamed",
		"select session_user")
	if err != nil {
		t.Fatalf("next grant cannot alter or drop what the first created: %v: %s", err, out)
	}
	if strings.Contains(out, login) {
		t.Fatalf("next grant reused the first grant's login %s", login)
	}
}

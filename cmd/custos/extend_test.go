package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/deploy/devstack"
)

// livePsql is an interactive psql through the proxy: statements go to
// its stdin, and each line it prints (stdout and stderr) arrives on lines.
type livePsql struct {
	stdin io.WriteCloser
	lines chan string
	done  chan struct{}
}

func (s *fullStack) livePsql(ctx context.Context, t *testing.T, token, role string) *livePsql {
	t.Helper()
	return startLivePsql(ctx, t, s.pgPort, token, role)
}

func startLivePsql(ctx context.Context, t *testing.T, port int, token, role string) *livePsql {
	t.Helper()
	cmd := exec.CommandContext(ctx, "psql", "-X", "-At",
		fmt.Sprintf("host=127.0.0.1 port=%d dbname=demo-pg user=alice sslmode=require", port))
	cmd.Env = append(os.Environ(), "PGPASSWORD="+token, "PGCONNECT_TIMEOUT=10", "PGOPTIONS=-c custos.role="+role)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &livePsql{stdin: stdin, lines: make(chan string, 100), done: make(chan struct{})}
	go func() { _ = cmd.Wait(); pw.Close(); close(p.done) }()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	t.Cleanup(func() { stdin.Close(); <-p.done })
	return p
}

// echo sends select 'word' and waits for the word; it returns what psql
// printed instead when the word does not come.
func (p *livePsql) echo(word string) (bool, string) {
	_, _ = fmt.Fprintf(p.stdin, "select '%s';\n", word)
	var got []string
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				return false, strings.Join(got, "\n")
			}
			if l == word {
				return true, ""
			}
			got = append(got, l)
		case <-timeout:
			return false, strings.Join(got, "\n") + " (timed out)"
		}
	}
}

// TestExtendLiveSessionEndToEnd: two psql sessions through the proxy on
// two short grants. Alice asks to extend both; bob approves one extension
// and denies the other. Past the grants' original end the session of the
// extended grant still answers (its timer was re-armed and Vault's login
// renewed), while the other ended at the original end. The extension cannot take the grant past max_duration, and the
// audit trail has grant.extend with the old and new end.
func TestExtendLiveSessionEndToEnd(t *testing.T) {
	s := startFullStack(t, stackOptions{})
	b := s.b
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	kept := s.grant("demo-pg", "readonly", "20s")
	cut := s.grant("demo-pg", "readwrite", "20s")
	token := strings.TrimSpace(b.ok("alice", "db", "token", "demo-pg"))
	ro := s.livePsql(ctx, t, token, "readonly")
	rw := s.livePsql(ctx, t, token, "readwrite")
	for _, p := range []*livePsql{ro, rw} {
		if ok, out := p.echo("before-extension"); !ok {
			t.Fatalf("psql through the proxy: %s\nbroker log:\n%s", out, b.logs)
		}
	}

	// Past max_duration (1h) in all: refused, whatever the approvers think.
	b.refused("alice", "extension_exceeds_max", "extend", kept.ID, "--for", "1h", "--reason", "INC-15 more")
	// Only the holder may ask; an approver may not extend alice's grant.
	b.refused("bob", "forbidden", "extend", kept.ID, "--for", "5m", "--reason", "INC-15 more")

	ext := decode[jsonRequest](t, b.ok("alice", "extend", kept.ID, "--for", "40s", "--reason", "INC-15 migration still running", "-o", "json"))
	b.refused("alice", "self_approval", "approve", ext.ID)
	pending := b.ok("bob", "requests", "--pending")
	if !strings.Contains(pending, "+40s on "+kept.ID) {
		t.Errorf("approver's list does not show the extension of %s:\n%s", kept.ID, pending)
	}
	d := decode[decided](t, b.ok("bob", "approve", ext.ID, "-o", "json"))
	if d.Grant == nil || d.Grant.ID != kept.ID || !d.Grant.EndsAt.Equal(kept.EndsAt.Add(40*time.Second)) {
		t.Fatalf("approved extension: %+v (grant ended at %v)", d.Grant, kept.EndsAt)
	}
	denied := decode[jsonRequest](t, b.ok("alice", "extend", cut.ID, "--for", "40s", "--reason", "INC-15 more", "-o", "json"))
	b.ok("bob", "deny", denied.ID, "--reason", "finish tomorrow")

	// Past the original end of both grants.
	time.Sleep(time.Until(kept.EndsAt.Add(3 * time.Second)))
	if ok, out := ro.echo("after-original-end"); !ok {
		t.Fatalf("the extended grant's session did not survive its original end: %s\nbroker log:\n%s", out, b.logs)
	}
	// (What psql prints depends on who ends the backend first: the proxy
	// at the grant's end, or Vault's revocation of the login.)
	if ok, out := rw.echo("after-original-end"); ok {
		t.Fatal("the session of a grant whose extension was denied outlived the grant")
	} else {
		t.Logf("psql on the grant whose extension was denied, past its end: %q", out)
	}
	waitState(t, b, "alice", cut.ID, "expired", time.Now().Add(5*time.Second))
	waitState(t, b, "alice", kept.ID, "active", time.Now().Add(time.Second))

	// And the extended one ends at its new end.
	time.Sleep(time.Until(d.Grant.EndsAt.Add(2 * time.Second)))
	if ok, _ := ro.echo("after-new-end"); ok {
		t.Fatal("the extended grant's session outlived its new end")
	}

	var found bool
	for _, r := range decode[[]auditRec](t, b.ok("sam", "audit", "list", "--action", "grant.extend", "--limit", "100", "-o", "json")) {
		if r.Details["grant_id"] == kept.ID && r.Details["old_ends_at"] != nil && r.Details["new_ends_at"] != nil {
			found = true
		}
	}
	if !found {
		t.Error("no grant.extend audit record with the old and new end")
	}
}

// TestExtendOtherReplica: two brokers share a PostgreSQL store. alice's
// psql session runs through broker A; bob approves her extension on
// broker B. A hears of it through the store's grant events, so the session
// outlives the grant's original end. Both brokers run the scheduler, yet
// each ending notice (one before the original end, one before the new
// end) is sent once.
func TestExtendOtherReplica(t *testing.T) {
	pg := devstack.StartPostgres(t)
	v := devstack.StartVault(t)
	v.Bootstrap(t, pg)
	if _, err := exec.LookPath("psql"); err != nil {
		devstack.Require(t, "psql", "apt-get install postgresql-client")
	}
	dsn := pg.DSN(pg.CreateDatabase(t, "replicas"))
	start := replicaStarter(t, pg, dsn, func(_, body string) string {
		body = strings.Replace(body, "users:\n", "security_admins: [security]\nusers:\n  - {name: sam, password: env:CUSTOS_E2E_PASSWORD}\n", 1)
		return strings.Replace(body, "groups:\n", "groups:\n  - {name: security, members: [sam]}\n", 1)
	})
	pgPort := devstack.FreePort(t)
	a := start("a", fmt.Sprintf(`{http: "127.0.0.1:%%d", postgres: "127.0.0.1:%d", tls_cert: %%[2]s/tls.crt, tls_key: %%[2]s/tls.key, data_dir: %%[2]s/data}`, pgPort),
		fmt.Sprintf("vault: {address: %q, token: env:CUSTOS_E2E_VAULT_TOKEN}", v.Addr), "CUSTOS_E2E_VAULT_TOKEN="+v.BrokerToken)
	b := start("b", `{http: "127.0.0.1:%d", tls_cert: %[2]s/tls.crt, tls_key: %[2]s/tls.key, data_dir: %[2]s/data}`, "")
	a.login("alice", "bob")
	b.login("bob", "sam")

	req := decode[jsonRequest](t, a.ok("alice", "request", "demo-pg", "--role", "readonly", "--for", "20s", "--reason", "INC-42", "-o", "json"))
	g := decode[decided](t, a.ok("bob", "approve", req.ID, "-o", "json")).Grant
	token := strings.TrimSpace(a.ok("alice", "db", "token", "demo-pg"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := startLivePsql(ctx, t, pgPort, token, "readonly")
	if ok, out := p.echo("before"); !ok {
		t.Fatalf("psql through broker A: %s\n%s", out, a.logs)
	}
	notices := func() map[string]int {
		ends := map[string]int{}
		for _, r := range decode[[]auditRec](t, b.ok("sam", "audit", "list", "--action", "grant.ending_notice", "--limit", "100", "-o", "json")) {
			if r.Details["grant_id"] == g.ID {
				ends[fmt.Sprint(r.Details["ends_at"])]++
			}
		}
		return ends
	}
	// The notice for the original end (the grant is shorter than ten
	// minutes) before the extension.
	for deadline := time.Now().Add(10 * time.Second); len(notices()) == 0; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no ending notice for the original end\nA:\n%s", a.logs)
		}
	}
	ext := decode[jsonRequest](t, a.ok("alice", "extend", g.ID, "--for", "30s", "--reason", "INC-42 longer", "-o", "json"))
	b.ok("bob", "approve", ext.ID)

	time.Sleep(time.Until(g.EndsAt.Add(3 * time.Second)))
	if ok, out := p.echo("after-original-end"); !ok {
		t.Fatalf("session on broker A ended at the original end though B approved an extension: %s\nA:\n%s", out, a.logs)
	}
	ends := notices()
	if len(ends) != 2 {
		t.Errorf("ending notices by end: %v; want one for the original end (%v) and one for the new (+30s)\nA:\n%s\nB:\n%s",
			ends, g.EndsAt, a.logs, b.logs)
	}
	for end, n := range ends {
		if n != 1 {
			t.Errorf("%d ending notices for the end %s; want 1", n, end)
		}
	}
}

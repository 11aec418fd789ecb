package cli

import (
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestUpstreamStartup: the broker always gets the token's user and the
// tunnel's target, whatever the local client named; the client's database
// picks one of the target's; --role lands in options.
func TestUpstreamStartup(t *testing.T) {
	tok := dbToken{User: "alice", Target: "orders"}
	role := tok
	role.Options = "-c custos.role=rw"
	for _, tc := range []struct {
		name   string
		tok    dbToken
		params map[string]string
		db     string
		opts   string
	}{
		{"empty database", tok, map[string]string{"user": "postgres"}, "orders", ""},
		{"database is the target", tok, map[string]string{"user": "x", "database": "orders"}, "orders", ""},
		{"libpq default: database is the user", tok, map[string]string{"user": "bob", "database": "bob"}, "orders", ""},
		{"other database of the target", tok, map[string]string{"user": "x", "database": "reports"}, "orders/reports", ""},
		{"already qualified", tok, map[string]string{"user": "x", "database": "orders/reports"}, "orders/reports", ""},
		{"other target is not reachable", tok, map[string]string{"user": "x", "database": "billing/main"}, "orders/billing/main", ""},
		{"role added", role, map[string]string{"user": "x"}, "orders", "-c custos.role=rw"},
		{"role after client options", role, map[string]string{"user": "x", "options": "-c search_path=a"}, "orders", "-c search_path=a -c custos.role=rw"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.params["application_name"] = "DBeaver"
			tc.params["replication"] = "database"
			got := upstreamStartup(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: tc.params}, tc.tok)
			p := got.Parameters
			if p["user"] != "alice" || p["database"] != tc.db || p["options"] != tc.opts || p["application_name"] != "DBeaver" {
				t.Fatalf("got %v", p)
			}
			if _, ok := p["replication"]; ok {
				t.Fatal("replication passed on")
			}
		})
	}
}

// TestReadLocalStartup: SSLRequest is answered 'N' on loopback, and an
// oversized startup packet is refused before it is read.
func TestReadLocalStartup(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	server.SetDeadline(time.Now().Add(5 * time.Second))
	client.SetDeadline(time.Now().Add(5 * time.Second))
	res := make(chan error, 1)
	var st localStartup
	go func() {
		var err error
		st, err = readLocalStartup(server)
		res <- err
	}()
	ssl, _ := (&pgproto3.SSLRequest{}).Encode(nil)
	client.Write(ssl)
	var b [1]byte
	if _, err := io.ReadFull(client, b[:]); err != nil || b[0] != 'N' {
		t.Fatalf("SSLRequest answer %q, %v", b, err)
	}
	sm, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "x"}}).Encode(nil)
	client.Write(sm)
	if err := <-res; err != nil || st.startup == nil || st.startup.Parameters["user"] != "x" {
		t.Fatalf("startup: %v %+v", err, st)
	}

	client2, server2 := net.Pipe()
	defer client2.Close()
	defer server2.Close()
	go func() { _, err := readLocalStartup(server2); res <- err }()
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[:], 1<<30)
	client2.Write(hdr[:4])
	msg := make([]byte, 256)
	n, _ := client2.Read(msg)
	if err := <-res; err == nil || !strings.Contains(string(msg[:n]), "invalid startup packet length") {
		t.Fatalf("oversized startup: %v, client got %q", err, msg[:n])
	}
}

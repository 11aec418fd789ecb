package config

import (
	"strings"
	"testing"
	"time"
)

// TestSessionSweep: the proxies re-check live sessions every 5s by
// default; the interval is bounded both ways.
func TestSessionSweep(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Listen.SessionSweep.D(); got != 5*time.Second {
		t.Fatalf("default session_sweep %v, want 5s", got)
	}
	if _, err := Parse([]byte("listen: {session_sweep: 2s}\n" + minimal)); err != nil {
		t.Fatalf("2s refused: %v", err)
	}
	for _, bad := range []string{"100ms", "10m"} {
		if _, err := Parse([]byte("listen: {session_sweep: " + bad + "}\n" + minimal)); err == nil || !strings.Contains(err.Error(), "listen.session_sweep") {
			t.Errorf("session_sweep %s: got %v, want a listen.session_sweep problem", bad, err)
		}
	}
}

// TestMaxStatementBytes: by default a PostgreSQL target refuses texts
// longer than a recording holds; the limit can be lowered, never raised.
func TestMaxStatementBytes(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Targets[0].Postgres.MaxStatementBytes; got != 1<<20 {
		t.Fatalf("default max_statement_bytes %d, want %d", got, 1<<20)
	}
	with := func(n string) error {
		_, err := Parse([]byte(strings.Replace(minimal, "    address: 127.0.0.1:5432\n",
			"    address: 127.0.0.1:5432\n    postgres: {max_statement_bytes: "+n+"}\n", 1)))
		return err
	}
	if err := with("65536"); err != nil {
		t.Fatalf("64 KiB refused: %v", err)
	}
	for _, bad := range []string{"1048577", "-1"} {
		if err := with(bad); err == nil || !strings.Contains(err.Error(), "targets[0].postgres.max_statement_bytes") {
			t.Errorf("max_statement_bytes %s: got %v, want a problem at its path", bad, err)
		}
	}
}

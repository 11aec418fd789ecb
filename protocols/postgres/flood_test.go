package pgproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/store/sqlite"
	"github.com/custos-pam/custos/protocols/lifecycle"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestRefusedStartupFloodIsThrottled is the attacker's test for the
// audit log: from one address, many startups with a 9.5 kB user name
// full of terminal escapes, half of them in plaintext, half over TLS with
// a made-up token. The audit log gets the throttle's burst and one
// summary, each naming the user bounded and escaped; an identified user's
// refusal is still a record of its own.
func TestRefusedStartupFloodIsThrottled(t *testing.T) {
	ctx := context.Background()
	state, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { state.Close() })
	log := audit.NewLog(state)
	const burst, n = 5, 40
	thr := audit.NewThrottle(log, audit.ThrottleOptions{Burst: burst, Window: time.Hour})
	s := newStack(t, func(_ *config.Target, o *Options) { o.Audit, o.Rejections = log, thr })

	name := "\x1b[2J\x1b]0;owned\x07" + strings.Repeat("m", 9500)
	for i := range n {
		sslmode := "require"
		if i%2 == 1 {
			sslmode = "disable"
		}
		cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d dbname=%s sslmode=%s password=cdb_forged connect_timeout=10",
			s.port, testTarget, sslmode))
		if err != nil {
			t.Fatal(err)
		}
		cfg.User = name
		c, err := pgconn.ConnectConfig(ctx, cfg)
		if err == nil {
			c.Close(ctx)
			t.Fatal("a forged token was accepted")
		}
	}
	// An identified user whose grant has ended: one record of its own.
	g := s.grant("alice")
	g.EndsAt = time.Now().Add(-time.Second)
	tok := s.auth.issue(g)
	if _, err := s.runPsql(t, "alice", tok, testTarget, "require", "SELECT 1;\n"); err == nil {
		t.Fatal("an ended grant was accepted")
	}
	if err := thr.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// The proxy refuses the client before it appends the refusal's
	// record: wait for alice's.
	var recs []broker.AuditRecord
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err := state.View(ctx, func(tx broker.Tx) error {
			recs, err = tx.ListAudit(broker.AuditFilter{ActionPrefix: lifecycle.ActionRefused})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(recs, func(r broker.AuditRecord) bool { return r.Actor == "alice" }) || time.Now().After(deadline) {
			break
		}
	}
	var anonymous, summaries, identified int
	for _, r := range recs {
		var d map[string]any
		if err := json.Unmarshal(r.Details, &d); err != nil {
			t.Fatal(err)
		}
		raw := r.Actor + r.Target + r.Reason + string(r.Details)
		if strings.ContainsAny(raw, "\x1b\x07") || strings.Contains(raw, strings.Repeat("m", 200)) {
			t.Errorf("record %d holds the raw name: %.200q", r.Seq, raw)
		}
		switch {
		case r.Actor == "alice":
			identified++
		case d["summary"] == true:
			summaries++
			if d["suppressed"] != float64(n-burst) {
				t.Errorf("summary counts %v suppressed refusals, want %d", d["suppressed"], n-burst)
			}
		default:
			anonymous++
			if len(r.Actor) > lifecycle.MaxAuditName || !strings.HasPrefix(r.Actor, `\x1b[2J\x1b]0;owned\a`) || d["anonymous"] != true {
				t.Errorf("anonymous refusal actor %q, details %v", r.Actor, d)
			}
		}
	}
	if anonymous != burst || summaries != 1 || identified != 1 {
		t.Fatalf("session.refused records: %d anonymous, %d summaries, %d identified; want %d, 1, 1", anonymous, summaries, identified, burst)
	}
}

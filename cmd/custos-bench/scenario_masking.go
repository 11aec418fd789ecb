package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Data protection on the wire (docs/data-protection.md): what masking and
// statement guardrails cost on the deployed broker. pgbench select-only at
// 8 clients goes through the broker as three roles of demo-pg that share
// the readonly database login: readonly (no rules: the plain relay),
// bench-masked (the dev data dictionary classifies
// pgbench_accounts.abalance, so every row pgbench reads is rewritten) and
// bench-guarded (the default guardrails: every statement parsed and
// classified), and straight to the target; runs interleave. The roles are
// in deploy/dev/custos.yaml.

// Roles the data-protection scenarios use.
const (
	roleNoRules = "readonly"
	roleMasked  = "bench-masked"
	roleGuarded = "bench-guarded"
)

// dataProtectionSteps are the scenarios, one per query mode of the plan.
func (b *bench) dataProtectionSteps() []step {
	sec := time.Duration(b.p.secs) * time.Second
	var out []step
	for _, m := range b.p.modes {
		out = append(out, step{fmt.Sprintf("data protection: pgbench -S -M %s -c 8, masked and guarded roles", m),
			time.Duration(4*b.p.runs) * (sec + 300*time.Millisecond), func() error { return b.dataProtection(m) }})
	}
	return out
}

// protectionPeers grants alice the three roles (once) and returns a
// broker peer per role, each with a token bound to it.
func (b *bench) protectionPeers() (map[string]peer, error) {
	if b.protection != nil {
		return b.protection, nil
	}
	peers := map[string]peer{}
	for _, role := range []string{roleNoRules, roleMasked, roleGuarded} {
		if err := b.s.grant("demo-pg", role); err != nil {
			return nil, fmt.Errorf("bench: grant demo-pg/%s: %w", role, err)
		}
		out, err := b.s.cli("alice", "", "db", "token", "demo-pg", "--role", role)
		if err != nil {
			return nil, fmt.Errorf("bench: db token demo-pg/%s: %w", role, err)
		}
		// The token is not bound to a role: the connection names it.
		p := b.peers.broker
		p.name, p.password = role, strings.TrimSpace(out)
		p.conninfo = fmt.Sprintf("host=127.0.0.1 port=%s dbname=demo-pg user=alice sslmode=require options='-c custos.role=%s'", b.s.env["CUSTOS_PG_PORT"], role)
		peers[role] = p
	}
	// The masked role must rewrite what pgbench reads, or the figure
	// measures nothing.
	if v, err := psqlVia(peers[roleMasked], "select abalance from pgbench_accounts where aid = 1"); err != nil || v == "" || strings.Trim(v, "*") != "" {
		return nil, fmt.Errorf("bench: role %s does not mask pgbench_accounts.abalance (got %q, %v): check the dev config's bench_balance", roleMasked, v, err)
	}
	b.protection = peers
	return peers, nil
}

// psqlVia runs one query through a peer and returns its output.
func psqlVia(p peer, sql string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", p.conninfo, "-c", sql)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+p.password)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("psql via %s: %w: %s", p.name, err, tail(out, 300))
	}
	return strings.TrimSpace(string(out)), nil
}

func (b *bench) dataProtection(mode string) error {
	peers, err := b.protectionPeers()
	if err != nil {
		return err
	}
	list := []peer{peers[roleNoRules], peers[roleMasked], peers[roleGuarded], b.peers.direct}
	tps, cpu, err := b.measurePG(pgbenchOpts{builtin: "select-only", mode: mode, clients: 8, secs: b.p.secs}, list, nil)
	if err != nil {
		return err
	}
	scn := fmt.Sprintf("data protection: pgbench -S -M %s -c 8", mode)
	b.add(newRow(scn, shared, "TPS, role without rules", "tx/s", tps[roleNoRules], nil))
	b.add(newRow(scn, shared, "TPS, masked role", "tx/s", tps[roleMasked], nil))
	b.add(newRow(scn, shared, "TPS, guarded role", "tx/s", tps[roleGuarded], nil))
	b.add(newRow(scn, shared, "TPS direct", "tx/s", tps["direct"], nil))
	r := newRow(scn, shared, "without rules ÷ direct", "×", ratios(tps[roleNoRules], tps["direct"]), nil)
	r.Plot = "ratio"
	b.add(r)
	r = newRow(scn, shared, "masked ÷ without rules", "×", ratios(tps[roleMasked], tps[roleNoRules]), atLeast("≥ 0.8", 0.8))
	r.Plot = "ratio"
	b.add(r)
	r = newRow(scn, shared, "guarded ÷ without rules", "×", ratios(tps[roleGuarded], tps[roleNoRules]), nil)
	r.Plot = "ratio"
	b.add(r)
	for _, role := range []string{roleNoRules, roleMasked, roleGuarded} {
		b.add(newRow(scn, shared, "broker CPU per 1,000 statements, "+role, "ms", cpu[role], nil))
	}
	return nil
}

package main

import (
	"fmt"
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
		p := b.peers.broker
		p.name, p.password = role, strings.TrimSpace(out)
		peers[role] = p
	}
	b.protection = peers
	return peers, nil
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

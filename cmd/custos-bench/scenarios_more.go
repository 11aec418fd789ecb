package main

import (
	"os"
	"path/filepath"
	"time"
)

// moreSteps are the scenarios of the target table beyond the PostgreSQL
// and SSH stream ones: file transfers, keystroke echo, the recorder on
// its own, session search, Slack approval end to end, and the
// PostgreSQL result stream (CPU per GiB) in both layouts.
func (b *bench) moreSteps() []step {
	p := b.p
	sec := time.Duration(p.secs) * time.Second
	mib := time.Duration(p.streamMiB)
	return []step{
		{"pgbench 1 MiB results (CPU per GiB)", time.Duration(3*p.runs) * (sec + 300*time.Millisecond), func() error { return b.bulkResults(shared) }},
		{"pgbench 1 MiB results (CPU per GiB, own core)", time.Duration(3*p.runs) * (sec + 300*time.Millisecond), func() error { return b.bulkResults(ownCore) }},
		{"scp and sftp up and down", time.Duration(p.runs*8) * (mib*time.Second/60 + time.Second), b.transfers},
		{"keystroke echo in a PTY", time.Duration(p.runs*2) * (time.Duration(p.echoKeys())*3*time.Millisecond + time.Second), b.keystrokeEcho},
		{"recorder MB/s", time.Duration(p.runs) * (time.Duration(p.recorderMiB())*time.Second/15 + 2*time.Second), b.recorderScenario},
		{"session search (SQLite and PostgreSQL)", time.Duration(p.searchSessions()/1000)*time.Second + time.Duration(p.runs*len(searchKinds)*p.searchQueries()*2)*50*time.Millisecond, b.sessionSearch},
		{"request → Slack click → grant usable", 15*time.Second + time.Duration(p.runs)*time.Second, b.slackApproval},
	}
}

// bulkResults runs a pgbench script whose transaction returns 1 MiB
// (16 rows of 64 KiB), through each peer, and reports throughput and the
// proxies' CPU seconds per GiB of results relayed.
func (b *bench) bulkResults(layout string) error {
	script := filepath.Join(b.s.tmp, "bulk.sql")
	if err := os.WriteFile(script, []byte("SELECT repeat('x', 65536) FROM generate_series(1, 16);\n"), 0o644); err != nil {
		return err
	}
	pins, undo, err := b.layoutPins(layout)
	defer undo()
	if err != nil {
		return err
	}
	o := pgbenchOpts{script: script, mode: "prepared", clients: 4, secs: b.p.secs}
	tps, cpuPerK, err := b.measurePG(o, b.pgPeerList(), pins)
	if err != nil {
		return err
	}
	scn := "pgbench 1 MiB results -c 4"
	b.add(newRow(scn, layout, "MiB/s via Custos", "MiB/s", tps["custos"], nil))
	b.add(newRow(scn, layout, "MiB/s direct", "MiB/s", tps["direct"], nil))
	r := newRow(scn, layout, "Custos ÷ direct", "×", ratios(tps["custos"], tps["direct"]), nil)
	r.Plot = "ratio"
	b.add(r)
	if b.peers.hasBouncer {
		b.add(newRow(scn, layout, "MiB/s via PgBouncer", "MiB/s", tps["pgbouncer"], nil))
		r := newRow(scn, layout, "Custos ÷ PgBouncer", "×", ratios(tps["custos"], tps["pgbouncer"]), atLeast("≥ 1.0", 1.0))
		r.Plot = "ratio"
		b.add(r)
	}
	// cpuPerK is ms per 1,000 transactions of 1 MiB: ms per GiB × 1000/1024.
	perGiB := func(v []float64) []float64 {
		out := make([]float64, len(v))
		for i, x := range v {
			out[i] = x / 1000 * 1024 / 1000 // s per GiB
		}
		return out
	}
	b.add(newRow(scn, layout, "broker CPU per GiB", "s", perGiB(cpuPerK["custos"]), nil))
	if b.peers.hasBouncer {
		b.add(newRow(scn, layout, "PgBouncer CPU per GiB", "s", perGiB(cpuPerK["pgbouncer"]), nil))
	}
	return nil
}

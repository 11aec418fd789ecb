package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

const (
	shared  = "shared"
	ownCore = "own core"
)

func (b *bench) steps() []step {
	p := b.p
	sec := time.Duration(p.secs) * time.Second
	per := func(n int) time.Duration { return time.Duration(n*p.runs) * (sec + 300*time.Millisecond) }
	var steps []step
	for _, c := range p.clients {
		for _, m := range p.modes {
			steps = append(steps, step{fmt.Sprintf("pgbench -S -M %s -c %d", m, c), per(3), func() error { return b.selectOnly(shared, c, m) }})
		}
	}
	for _, c := range p.ownClients {
		for _, m := range p.ownModes {
			steps = append(steps, step{fmt.Sprintf("pgbench -S -M %s -c %d (own core)", m, c), per(3), func() error { return b.selectOnly(ownCore, c, m) }})
		}
	}
	steps = append(steps,
		step{"pgbench TPC-B -c 8", per(3), b.tpcb},
		step{"pgbench -C", per(2), b.connectEach},
		step{"single-client simple query latency", per(2), b.latency},
		step{"ssh stream up and down", time.Duration(p.runs*4) * time.Duration(p.streamMiB/16+1) * time.Second, b.sshStreams},
		// Opening one: about 50 ms for PostgreSQL, 250 ms for SSH (a
		// Vault-signed certificate per session), plus a second per count.
		step{"idle PostgreSQL connections", time.Duration(p.runs) * (maxOf(p.pgCounts)*50*time.Millisecond + time.Duration(len(p.pgCounts))*time.Second), func() error { return b.idle("postgres") }},
		step{"idle SSH sessions", time.Duration(p.runs) * (maxOf(p.sshCounts)*120*time.Millisecond + time.Duration(len(p.sshCounts))*time.Second), func() error { return b.idle("ssh") }},
	)
	steps = append(steps, b.dataProtectionSteps()...)
	steps = append(steps, b.moreSteps()...) // scenarios_more.go
	return steps
}

// measurePG runs pgbench against each peer in turn, runs times, and
// returns TPS per peer and the proxies' CPU ticks per transaction.
func (b *bench) measurePG(o pgbenchOpts, peers []peer, cpuPin map[string]string) (tps map[string][]float64, cpuPerK map[string][]float64, err error) {
	tps, cpuPerK = map[string][]float64{}, map[string][]float64{}
	for i := 0; i < b.p.runs; i++ {
		for _, pr := range peers {
			oo := o
			oo.cpu = cpuPin[pr.name]
			r, err := runPgbench(pr, oo)
			if err != nil {
				return nil, nil, err
			}
			tps[pr.name] = append(tps[pr.name], r.tps)
			if pr.pid != 0 && r.txns > 0 {
				cpuPerK[pr.name] = append(cpuPerK[pr.name], r.cpuTicks/clkTck*1000/r.txns*1000) // ms per 1,000
			}
		}
	}
	return tps, cpuPerK, nil
}

func ratios(a, b []float64) []float64 {
	var out []float64
	for i := range a {
		if i < len(b) && b[i] > 0 {
			out = append(out, a[i]/b[i])
		}
	}
	return out
}

func (b *bench) pgPeerList() []peer {
	l := []peer{b.peers.broker, b.peers.direct}
	if b.peers.hasBouncer {
		l = append(l, b.peers.bouncer)
	}
	return l
}

// layoutPins pins the proxies to core 1 and PostgreSQL (and pgbench,
// through cpuPin) to core 0 for the own-core layout; the returned func
// undoes it.
func (b *bench) layoutPins(layout string) (map[string]string, func(), error) {
	if layout != ownCore {
		return nil, func() {}, nil
	}
	pids := []int{b.s.brokerPID}
	if b.peers.hasBouncer {
		pids = append(pids, b.peers.bouncer.pid)
	}
	pg := append([]int{b.s.pgPID}, children(b.s.pgPID)...)
	undo := func() {
		for _, pid := range append(append([]int{}, pids...), append([]int{b.s.pgPID}, children(b.s.pgPID)...)...) {
			_ = pin(pid, "0-1")
		}
	}
	for _, pid := range pids {
		if err := pin(pid, "1"); err != nil {
			return nil, undo, err
		}
	}
	for _, pid := range pg {
		_ = pin(pid, "0") // backends may exit meanwhile
	}
	pins := map[string]string{"custos": "0", "direct": "0", "pgbouncer": "0"}
	return pins, undo, nil
}

func (b *bench) selectOnly(layout string, clients int, mode string) error {
	pins, undo, err := b.layoutPins(layout)
	defer undo()
	if err != nil {
		return err
	}
	scn := fmt.Sprintf("pgbench -S -M %s -c %d", mode, clients)
	tps, cpu, err := b.measurePG(pgbenchOpts{builtin: "select-only", mode: mode, clients: clients, secs: b.p.secs}, b.pgPeerList(), pins)
	if err != nil {
		return err
	}
	b.pgRows(scn, layout, tps, cpu, layout == ownCore)
	return nil
}

// pgRows adds the TPS, the ratios and (shared layout) CPU rows of one cell.
func (b *bench) pgRows(scn, layout string, tps, cpu map[string][]float64, directTarget bool) {
	var dt *target
	if directTarget {
		dt = atLeast("≥ 0.85", 0.85)
	}
	b.add(newRow(scn, layout, "TPS via Custos", "tx/s", tps["custos"], nil))
	b.add(newRow(scn, layout, "TPS direct", "tx/s", tps["direct"], nil))
	r := newRow(scn, layout, "Custos ÷ direct", "×", ratios(tps["custos"], tps["direct"]), dt)
	r.Plot = "ratio"
	b.add(r)
	if !b.peers.hasBouncer {
		b.add(missing(scn, "Custos ÷ PgBouncer", "≥ 1.0", "no peer"))
		return
	}
	b.add(newRow(scn, layout, "TPS via PgBouncer", "tx/s", tps["pgbouncer"], nil))
	r = newRow(scn, layout, "Custos ÷ PgBouncer", "×", ratios(tps["custos"], tps["pgbouncer"]), atLeast("≥ 1.0", 1.0))
	r.Plot = "ratio"
	b.add(r)
	b.add(newRow(scn, layout, "broker CPU per 1,000 statements", "ms", cpu["custos"], nil))
	b.add(newRow(scn, layout, "PgBouncer CPU per 1,000 statements", "ms", cpu["pgbouncer"], nil))
}

func (b *bench) tpcb() error {
	tps, cpu, err := b.measurePG(pgbenchOpts{builtin: "tpcb-like", mode: "simple", clients: 8, secs: b.p.secs}, b.pgPeerList(), nil)
	if err != nil {
		return err
	}
	b.pgRows("pgbench TPC-B -c 8", shared, tps, cpu, false)
	return nil
}

func (b *bench) connectEach() error {
	tps, _, err := b.measurePG(pgbenchOpts{builtin: "select-only", mode: "simple", clients: 1, secs: b.p.secs + 1, connect: true},
		[]peer{b.peers.broker, b.peers.direct}, nil)
	if err != nil {
		return err
	}
	scn := "pgbench -S -C -c 1"
	b.add(newRow(scn, shared, "connections/s via Custos", "conn/s", tps["custos"], nil))
	b.add(newRow(scn, shared, "connections/s direct", "conn/s", tps["direct"], nil))
	r := newRow(scn, shared, "Custos ÷ direct", "×", ratios(tps["custos"], tps["direct"]), atLeast("≥ 0.8", 0.8))
	r.Plot = "ratio"
	b.add(r)
	return nil
}

func (b *bench) latency() error {
	var p50, p99 []float64
	for i := 0; i < b.p.runs; i++ {
		var l [2][]float64
		for j, pr := range []peer{b.peers.broker, b.peers.direct} {
			r, err := runPgbench(pr, pgbenchOpts{builtin: "select-only", mode: "simple", clients: 1, secs: b.p.secs,
				logDir: filepath.Join(b.s.tmp, "lat-"+strconv.Itoa(j))})
			if err != nil {
				return err
			}
			l[j] = r.lat
		}
		p50 = append(p50, percentile(l[0], 0.50)-percentile(l[1], 0.50))
		p99 = append(p99, percentile(l[0], 0.99)-percentile(l[1], 0.99))
	}
	scn := "single-client simple query (pgbench -S -c 1)"
	b.add(newRow(scn, shared, "added p50", "µs", p50, atMost("≤ 50 µs", 50)))
	b.add(newRow(scn, shared, "added p99", "µs", p99, atMost("≤ 150 µs", 150)))
	return nil
}

func (b *bench) sshStreams() error {
	bp, dp, err := b.s.sshPeers()
	if err != nil {
		return err
	}
	n := b.p.streamMiB << 20
	for _, up := range []bool{true, false} {
		scn := fmt.Sprintf("ssh stream %d MiB %s", b.p.streamMiB, direction(up))
		if err := b.pairedStream(scn, n, func(p sshPeer, pid int) (float64, float64, error) {
			return sshStream(p, n, up, pid)
		}, bp, dp); err != nil {
			return err
		}
	}
	return nil
}

// pairedStream measures one byte stream of n bytes through the broker and
// straight to sshd, run by run, and adds its rows: MB/s each way, the
// ratio against the 0.8 target, and broker CPU per GiB.
func (b *bench) pairedStream(scn string, n int64, measure func(p sshPeer, brokerPID int) (mbps, ticks float64, err error), bp, dp sshPeer) error {
	var cus, dir, cpu []float64
	for i := 0; i < b.p.runs; i++ {
		c, ticks, err := measure(bp, b.s.brokerPID)
		if err != nil {
			return err
		}
		d, _, err := measure(dp, 0)
		if err != nil {
			return err
		}
		cus, dir = append(cus, c), append(dir, d)
		cpu = append(cpu, ticks/clkTck/(float64(n)/(1<<30)))
	}
	b.add(newRow(scn, shared, "MB/s via Custos", "MB/s", cus, nil))
	b.add(newRow(scn, shared, "MB/s direct", "MB/s", dir, nil))
	r := newRow(scn, shared, "Custos ÷ direct", "×", ratios(cus, dir), atLeast("≥ 0.8", 0.8))
	r.Plot = "ratio"
	b.add(r)
	b.add(newRow(scn, shared, "broker CPU per GiB", "s", cpu, nil))
	return nil
}

func direction(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

// idle holds connections of kind open through the broker and reports
// its RSS and Go heap growth per connection. Each run starts from nothing
// held and opens connections up to each count in turn (ascending),
// measuring at every count against the run's own baseline, then closes
// them all: one ramp per run gives every count, so the slope shows
// without opening the smaller counts again.
func (b *bench) idle(kind string) error {
	counts, limit, goal, bound := b.p.pgCounts, 0, "≤ 64 KiB", 64.0
	open := b.s.idlePG
	if kind == "ssh" {
		counts, goal, bound, open = b.p.sshCounts, "≤ 150 KiB", 150, b.s.idleSSH
	} else if v, err := b.s.psqlDirect("show max_connections"); err == nil {
		limit, _ = strconv.Atoi(v)
		limit -= 20 // the broker's own and pgbench's spare
	}
	var held []int
	for _, n := range counts {
		if limit > 0 && n > limit {
			b.add(missing(fmt.Sprintf("%d idle %s connections", n, kind), "broker RSS per connection", goal,
				fmt.Sprintf("not measured: target max_connections allows %d", limit+20)))
			continue
		}
		held = append(held, n)
	}
	slices.Sort(held)
	deltas := map[int][]float64{}     // count → ΔRSS KiB per run
	heapDeltas := map[int][]float64{} // count → Δheap KiB per run
	for i := 0; i < b.p.runs; i++ {
		b.s.settle()
		before, heapBefore := rssKiB(b.s.brokerPID), b.s.heapKiB()
		var closers []func()
		closeAll := func() {
			for _, c := range closers {
				c()
			}
		}
		open0 := 0
		for _, n := range held {
			c, err := open(n - open0)
			if err != nil {
				closeAll()
				return err
			}
			closers, open0 = append(closers, c), n
			b.s.drain(false) // the new sessions' first recording chunks uploaded
			after, heapAfter := rssKiB(b.s.brokerPID), b.s.heapKiB()
			if heapBefore > 0 && heapAfter > 0 {
				heapDeltas[n] = append(heapDeltas[n], heapAfter-heapBefore)
			}
			deltas[n] = append(deltas[n], after-before)
		}
		closeAll()
	}
	perConn := func(d []float64, n int) []float64 {
		out := make([]float64, len(d))
		for j, v := range d {
			out[j] = v / float64(n)
		}
		return out
	}
	for _, n := range held {
		scn := fmt.Sprintf("%d idle %s connections", n, kind)
		b.add(newRow(scn, shared, "broker RSS growth per connection", "KiB", perConn(deltas[n], n), nil))
		if len(heapDeltas[n]) > 0 {
			h := newRow(scn, shared, "broker Go heap in use growth per connection", "KiB", perConn(heapDeltas[n], n), nil)
			h.Plot, h.Count = "memory-"+kind, n // the plot shows the steadier heap figure
			b.add(h)
		}
	}
	// The slope across counts (least squares, run by run) is the cost of
	// one more connection, without the fixed cost of the first ones.
	b.addSlope(kind, "broker RSS per connection", deltas, goal, bound)
	if len(heapDeltas) > 0 {
		b.addSlope(kind, "broker Go heap in use per connection", heapDeltas, goal, bound)
	}
	return nil
}

func (b *bench) addSlope(kind, measure string, deltas map[int][]float64, goal string, bound float64) {
	var slopes []float64
	for i := 0; i < b.p.runs; i++ {
		var xs, ys []float64
		for n, d := range deltas {
			if i < len(d) {
				xs, ys = append(xs, float64(n)), append(ys, d[i])
			}
		}
		if len(xs) >= 2 {
			slopes = append(slopes, slope(xs, ys))
		}
	}
	scn := "idle " + kind + " connections, slope over counts"
	if len(slopes) == 0 {
		b.add(missing(scn, measure, goal, "not measured: fewer than two counts"))
		return
	}
	r := newRow(scn, shared, measure, "KiB", slopes, atMost(goal, bound))
	if r.Min < 0 {
		r.Status = "inconclusive (a run's slope is negative: noise)"
	}
	b.add(r)
}

func maxOf(v []int) time.Duration {
	return time.Duration(slices.Max(v))
}

func slope(xs, ys []float64) float64 {
	var mx, my float64
	for i := range xs {
		mx += xs[i]
		my += ys[i]
	}
	mx /= float64(len(xs))
	my /= float64(len(ys))
	var num, den float64
	for i := range xs {
		num += (xs[i] - mx) * (ys[i] - my)
		den += (xs[i] - mx) * (xs[i] - mx)
	}
	if den == 0 {
		return 0
	}
	return num / den
}

// notMeasured lists the issue-19 scenarios the driver does not run yet.
func notMeasured() []row {
	return nil
}

// Command custos-bench measures Custos as deployed: it reuses (or starts)
// the `make up` stack, whose broker is `custos serve` with the S3 store,
// recording encryption and the live view, and drives it with real clients
// (pgbench, ssh, PgBouncer as a peer). It writes bench/results/latest.md,
// latest.json and SVG plots. `make bench` runs it; QUICK=1 a short subset.
// See docs/performance.md.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// plan sizes a run: full (make bench) or quick (make bench QUICK=1).
type plan struct {
	quick      bool
	runs       int
	secs       int // seconds per pgbench run
	clients    []int
	modes      []string
	ownClients []int
	ownModes   []string
	streamMiB  int64
	pgCounts   []int
	sshCounts  []int
}

func fullPlan() plan {
	return plan{runs: 5, secs: 5, clients: []int{1, 8, 32}, modes: []string{"simple", "extended", "prepared"},
		ownClients: []int{1, 8, 32}, ownModes: []string{"simple", "extended", "prepared"}, streamMiB: 1024, pgCounts: []int{250, 500, 1000, 2000}, sshCounts: []int{125, 250, 500, 1000}}
}

func quickPlan() plan {
	return plan{quick: true, runs: 3, secs: 2, clients: []int{8}, modes: []string{"simple", "prepared"},
		ownClients: []int{8}, ownModes: []string{"simple"}, streamMiB: 64, pgCounts: []int{50, 100, 200}, sshCounts: []int{50, 100, 200}}
}

// step is one scenario with its estimated duration, for the progress line.
type step struct {
	name string
	est  time.Duration
	run  func() error
}

func main() {
	quick := flag.Bool("quick", os.Getenv("QUICK") != "" && os.Getenv("QUICK") != "0", "run the short subset (QUICK=1)")
	out := flag.String("out", "bench/results", "directory for latest.md, latest.json and the plots")
	only := flag.String("only", os.Getenv("ONLY"), "run only the scenarios whose name contains this text (ONLY=...), e.g. \"data protection\"")
	cpuProfile := flag.String("cpuprofile", "", "write the driver's own CPU profile here (the in-process scenarios: recorder, session search)")
	flag.Parse()
	root, err := os.Getwd()
	if err != nil {
		fail(err)
	}
	p := fullPlan()
	if *quick {
		p = quickPlan()
	}
	s, err := openStack(root)
	if err != nil {
		fail(err)
	}
	b := &bench{s: s, p: p, only: *only}
	if *cpuProfile != "" {
		stop, perr := startCPUProfile(*cpuProfile)
		if perr != nil {
			fail(perr)
		}
		defer stop()
	}
	err = b.run()
	s.close()
	if err != nil {
		fail(err)
	}
	dir := *out
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(root, dir)
	}
	if err := b.write(dir); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

type bench struct {
	s     *stack
	p     plan
	rows  []row
	start time.Time
	peers struct {
		broker, direct, bouncer peer
		hasBouncer              bool
	}
	stopBouncer func()
	// protection are the broker peers of the data-protection roles
	// (scenario_masking.go), once granted.
	protection map[string]peer
	// only runs the scenarios whose name contains it (-only).
	only string
}

func (b *bench) add(r row) { b.rows = append(b.rows, r) }

func (b *bench) run() error {
	b.start = time.Now()
	if err := b.setup(); err != nil {
		return err
	}
	if b.stopBouncer != nil {
		defer b.stopBouncer()
	}
	steps := slices.DeleteFunc(b.steps(), func(st step) bool { return !strings.Contains(st.name, b.only) })
	var est time.Duration
	for _, st := range steps {
		est += st.est
	}
	for i, st := range steps {
		el := time.Since(b.start).Round(time.Second)
		left := est
		for _, done := range steps[:i] {
			left -= done.est
		}
		fmt.Fprintf(os.Stderr, "bench: scenario %d/%d %s — elapsed %s, about %s left\n", i+1, len(steps), st.name, el, left.Round(time.Second))
		b.refreshToken()
		if err := st.run(); err != nil {
			logf("bench: %s: %v", st.name, err)
			b.add(missing(st.name, "", "", "failed: "+firstLine(err.Error())))
		}
	}
	fmt.Fprintf(os.Stderr, "bench: done in %s\n", time.Since(b.start).Round(time.Second))
	return nil
}

// refreshToken fetches a fresh connection token for every PostgreSQL
// peer through the broker: a token lives auth.db_token_ttl (15 minutes by
// default) and a full run takes far longer. The token is not bound to a
// role, so the data-protection peers take it too.
func (b *bench) refreshToken() {
	tok, err := b.s.dbToken()
	if err != nil || tok == "" {
		logf("bench: db token: %v (keeping the previous one)", err)
		return
	}
	b.s.pgToken, b.peers.broker.password = tok, tok
	for role, p := range b.protection {
		p.password = tok
		b.protection[role] = p
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 160 {
		s = s[:160]
	}
	return s
}

func (b *bench) setup() error {
	s := b.s
	if err := s.grant("demo-pg", "readwrite"); err != nil {
		return fmt.Errorf("bench: grant demo-pg: %w", err)
	}
	if err := s.grant("demo-ssh", "ops"); err != nil {
		return fmt.Errorf("bench: grant demo-ssh: %w", err)
	}
	tok, err := s.dbToken()
	if err != nil {
		return fmt.Errorf("bench: db token: %w", err)
	}
	s.pgToken = tok
	s.signInAdmin()
	if err := s.initPgbench(); err != nil {
		return err
	}
	b.peers.broker, b.peers.direct = s.pgPeers()
	bp, stop, ok, err := s.startPgbouncer()
	if err != nil {
		logf("bench: pgbouncer: %v (its cells report 'no peer')", err)
	}
	if ok {
		b.peers.bouncer, b.peers.hasBouncer, b.stopBouncer = bp, true, stop
	}
	return nil
}

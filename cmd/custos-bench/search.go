package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/store/postgres"
	"github.com/custos-pam/custos/broker/store/sqlite"
)

// Session search: a scratch store of each kind (a SQLite file in the
// driver's temp directory; a scratch database on the stack's PostgreSQL,
// dropped afterwards) seeded in bulk with synthetic sessions, then the
// searches the sessions page sends, timed through Tx.ListSessions as the
// web API calls it for a security admin (who sees every session; the
// API's default limit of 500 rows).

// searchSessions is how many sessions each store is seeded with (QUICK
// too: seeding takes seconds).
func (plan) searchSessions() int { return 100_000 }

// searchQueries is how many searches of each kind one run times.
func (p plan) searchQueries() int {
	if p.quick {
		return 20
	}
	return 40
}

const searchUsers, searchTargets = 200, 40

var searchWords = []string{"ls -la /var/log", "sudo systemctl restart nginx", "tail -f /var/log/syslog",
	"SELECT * FROM orders WHERE id = $1", "UPDATE accounts SET balance = balance - 10", "vim /etc/hosts",
	"kubectl get pods -A", "df -h", "psql -c 'select 1'", "cat /etc/passwd", "journalctl -u sshd",
	"scp backup.tar.gz", "grep -r password /etc", "DELETE FROM sessions WHERE expired", "top -b -n 1",
	"CREATE INDEX CONCURRENTLY", "VACUUM ANALYZE", "docker ps", "git pull", "chmod 600 ~/.ssh/id_ed25519"}

// seedSessions writes n synthetic sessions over the year before now, in
// transactions of 5,000.
func seedSessions(ctx context.Context, st broker.Store, n int, now time.Time) error {
	rng := rand.New(rand.NewPCG(19, 100_000))
	const batch = 5000
	for lo := 0; lo < n; lo += batch {
		err := st.Update(ctx, func(tx broker.Tx) error {
			for i := lo; i < min(lo+batch, n); i++ {
				started := now.Add(-time.Duration(rng.Int64N(int64(365 * 24 * time.Hour))))
				var idx strings.Builder
				for range 4 + rng.IntN(8) {
					idx.WriteString(searchWords[rng.IntN(len(searchWords))])
					idx.WriteByte('\n')
				}
				if rng.IntN(1000) == 0 {
					idx.WriteString("pg_dump --data-only customers\n") // rare: about 1 in 1,000
				}
				proto := "ssh"
				if i%3 == 0 {
					proto = "postgres"
				}
				s := broker.Session{ID: fmt.Sprintf("ses_bench%07d", i), GrantID: fmt.Sprintf("grt_bench%06d", i/4),
					User: fmt.Sprintf("user%03d", rng.IntN(searchUsers)), Target: fmt.Sprintf("target%02d", rng.IntN(searchTargets)),
					Role: "ops", Protocol: proto, ClientAddr: "10.0.0.1:50000", StartedAt: started,
					EndedAt: started.Add(time.Duration(1+rng.IntN(3600)) * time.Second), State: broker.SessionClosed,
					Bytes: rng.Int64N(1 << 24), Statements: rng.Int64N(1000), Index: idx.String(),
					ManifestHash: fmt.Sprintf("%064x", i)}
				if err := tx.PutSession(s); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("bench: seed sessions: %w", err)
		}
	}
	return nil
}

// searchKind is one kind of search and how to vary it per query.
type searchKind struct {
	name   string
	filter func(rng *rand.Rand, now time.Time) broker.SessionFilter
	page2  bool // fetch page 1, then time page 2 (until = page 1's last start)
}

var searchKinds = []searchKind{
	{name: "by user", filter: func(rng *rand.Rand, _ time.Time) broker.SessionFilter {
		return broker.SessionFilter{User: fmt.Sprintf("user%03d", rng.IntN(searchUsers)), Limit: 500}
	}},
	{name: "by text", filter: func(rng *rand.Rand, _ time.Time) broker.SessionFilter {
		q := []string{"pg_dump", "systemctl restart", "DELETE FROM"}[rng.IntN(3)]
		return broker.SessionFilter{Contains: q, Limit: 500}
	}},
	{name: "by time range (one day)", filter: func(rng *rand.Rand, now time.Time) broker.SessionFilter {
		until := now.Add(-time.Duration(rng.IntN(360)) * 24 * time.Hour)
		return broker.SessionFilter{Since: until.Add(-24 * time.Hour), Until: until, Limit: 500}
	}},
	{name: "user, text and a month", filter: func(rng *rand.Rand, now time.Time) broker.SessionFilter {
		until := now.Add(-time.Duration(rng.IntN(330)) * 24 * time.Hour)
		return broker.SessionFilter{User: fmt.Sprintf("user%03d", rng.IntN(searchUsers)), Contains: "vim",
			Since: until.Add(-30 * 24 * time.Hour), Until: until, Limit: 500}
	}},
	{name: "paged (page 2 of 50 rows)", page2: true, filter: func(rng *rand.Rand, _ time.Time) broker.SessionFilter {
		return broker.SessionFilter{Target: fmt.Sprintf("target%02d", rng.IntN(searchTargets)), Limit: 50}
	}},
}

func listSessions(ctx context.Context, st broker.Store, f broker.SessionFilter) ([]broker.Session, error) {
	var out []broker.Session
	err := st.View(ctx, func(tx broker.Tx) error {
		var err error
		out, err = tx.ListSessions(f)
		return err
	})
	return out, err
}

// searchTimes runs q searches of kind k and returns their times in ms.
func searchTimes(ctx context.Context, st broker.Store, k searchKind, q int, rng *rand.Rand, now time.Time) ([]float64, error) {
	var ms []float64
	for range q {
		f := k.filter(rng, now)
		if k.page2 {
			first, err := listSessions(ctx, st, f)
			if err != nil {
				return nil, err
			}
			if len(first) > 0 {
				f.Until = first[len(first)-1].StartedAt
			}
		}
		start := time.Now()
		if _, err := listSessions(ctx, st, f); err != nil {
			return nil, fmt.Errorf("bench: search %s: %w", k.name, err)
		}
		ms = append(ms, float64(time.Since(start).Microseconds())/1000)
	}
	sort.Float64s(ms)
	return ms, nil
}

// searchStore seeds one store and reports the p95 of each kind of search.
func (b *bench) searchStore(ctx context.Context, kind string, st broker.Store) error {
	n := b.p.searchSessions()
	now := time.Now().UTC()
	start := time.Now()
	if err := seedSessions(ctx, st, n, now); err != nil {
		return err
	}
	scn := fmt.Sprintf("session search, %d sessions, %s store", n, kind)
	b.add(newRow(scn, shared, "seeding (bulk insert, once)", "s", []float64{time.Since(start).Seconds()}, nil))
	rng := rand.New(rand.NewPCG(5, 19))
	for _, k := range searchKinds {
		var p95, p50 []float64
		for i := 0; i < b.p.runs; i++ {
			ms, err := searchTimes(ctx, st, k, b.p.searchQueries(), rng, now)
			if err != nil {
				return err
			}
			p95, p50 = append(p95, percentile(ms, 0.95)), append(p50, percentile(ms, 0.50))
		}
		b.add(newRow(scn, shared, k.name+": p50", "ms", p50, nil))
		r := newRow(scn, shared, k.name+": p95", "ms", p95, atMost("≤ 200 ms", 200))
		r.Plot = "latency"
		b.add(r)
	}
	return nil
}

// sessionSearch runs the search scenario on a scratch SQLite file and a
// scratch PostgreSQL database.
func (b *bench) sessionSearch() error {
	ctx := context.Background()
	dir, err := os.MkdirTemp(b.s.tmp, "search-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	lite, err := sqlite.Open(ctx, filepath.Join(dir, "search.db"))
	if err != nil {
		return fmt.Errorf("bench: scratch sqlite store: %w", err)
	}
	err = b.searchStore(ctx, "SQLite", lite)
	lite.Close()
	if err != nil {
		return err
	}
	const db = "custos_bench_search"
	if _, err := b.s.psqlDirect("drop database if exists " + db); err != nil {
		return err
	}
	if _, err := b.s.psqlDirect("create database " + db); err != nil {
		return err
	}
	defer func() { _, _ = b.s.psqlDirect("drop database if exists " + db + " with (force)") }()
	dsn := (&url.URL{Scheme: "postgres", User: url.UserPassword(b.s.env["CUSTOS_TARGET_PG_USER"], b.s.env["CUSTOS_TARGET_PG_PASSWORD"]),
		Host: "127.0.0.1:" + b.s.env["CUSTOS_TARGET_PG_PORT"], Path: "/" + db, RawQuery: "sslmode=require"}).String()
	pg, err := postgres.Open(ctx, dsn)
	if err != nil {
		return fmt.Errorf("bench: scratch postgres store: %w", err)
	}
	defer pg.Close()
	return b.searchStore(ctx, "PostgreSQL", pg)
}

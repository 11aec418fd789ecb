package pgproxy

import (
	"context"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// idleConns is how many connections TestIdleConnectionHeap holds
// (CUSTOS_IDLE_CONNS overrides it).
const idleConns = 60

// TestIdleConnectionHeap holds N idle connections through the proxy (real
// recorder, TLS both ways, each after one query) and reports the Go heap
// the process holds per connection, less what the same clients hold when
// connected straight to PostgreSQL. It is a report, not an assertion:
// run with -v to read it. CUSTOS_IDLE_CONNS and CUSTOS_IDLE_QUERIES (per
// connection before it idles) change the load; CUSTOS_IDLE_HEAPPROFILE=path
// writes heap profiles while the proxied connections are held.
func TestIdleConnectionHeap(t *testing.T) {
	if raceEnabled {
		t.Skip("heap figures under the race detector are meaningless")
	}
	if os.Getenv("CUSTOS_IDLE_HEAPPROFILE") != "" {
		runtime.MemProfileRate = 1
	}
	n := idleConns
	if v, err := strconv.Atoi(os.Getenv("CUSTOS_IDLE_CONNS")); err == nil && v > 0 {
		n = v
	}
	s := newStack(t, withRecorder(realRecorder(t)))
	tok, _ := s.token("alice")
	direct := "host=" + s.pg.Host + " port=" + strconv.Itoa(s.pg.Port) + " dbname=" + s.db +
		" user=" + s.role + " password=" + s.password + " sslmode=require"
	proxied := s.conninfo("alice", testTarget, "require") + " password=" + tok

	queries := 1
	if v, err := strconv.Atoi(os.Getenv("CUSTOS_IDLE_QUERIES")); err == nil && v > 0 {
		queries = v
	}
	dh, ds := heapPerConn(t, direct, n, queries, "")
	ph, ps := heapPerConn(t, proxied, n, queries, os.Getenv("CUSTOS_IDLE_HEAPPROFILE"))
	t.Logf("idle connections: %d, each after %d queries; per additional connection (slope from %d to %d): direct (client only) heap %.1f KiB, stacks %.1f KiB; "+
		"through the proxy heap %.1f KiB, stacks %.1f KiB; the proxy's share: heap %.1f KiB, goroutine stacks %.1f KiB",
		n, queries, n/2, n, dh/1024, ds/1024, ph/1024, ps/1024, (ph-dh)/1024, (ps-ds)/1024)
}

// heapPerConn opens n connections with conninfo, runs queries on each,
// and returns the growth of the live heap, and of goroutine stacks, per
// connection held idle: the slope between holding n/2 and n, so fixed
// costs (pools, the first chunks in flight) do not count.
func heapPerConn(t *testing.T, conninfo string, n, queries int, profile string) (heap, stacks float64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var conns []*pgconn.PgConn
	defer func() {
		for _, c := range conns {
			c.Close(context.Background())
		}
	}()
	var h, st [2]uint64
	for i, upto := range []int{n / 2, n} {
		for len(conns) < upto {
			c, err := pgconn.Connect(ctx, conninfo)
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			conns = append(conns, c)
			for range queries {
				if _, err := c.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
					t.Fatalf("query: %v", err)
				}
			}
		}
		// Let the relays settle into their idle reads and the
		// recordings close, seal and spool their first chunk (1 s).
		time.Sleep(3 * time.Second)
		h[i], st[i] = liveHeap()
		if profile != "" {
			// The heap profile at n/2 is the base to read the one at n
			// against (go tool pprof -diff_base path.half path).
			name := profile
			if i == 0 {
				name += ".half"
			}
			f, err := os.Create(name)
			if err != nil {
				t.Fatal(err)
			}
			pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
			if f, err := os.Create(name + ".goroutines"); err == nil {
				pprof.Lookup("goroutine").WriteTo(f, 1)
				f.Close()
			}
		}
	}
	k := float64(n - n/2)
	return float64(int64(h[1])-int64(h[0])) / k, float64(int64(st[1])-int64(st[0])) / k
}

// liveHeap is the heap in use after two collections, and the memory of
// goroutine stacks.
func liveHeap() (heap, stacks uint64) {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapInuse, m.StackInuse
}

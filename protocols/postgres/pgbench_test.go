package pgproxy

import (
	"context"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/recorder/event"
)

// runPgbench runs pgbench with args against conninfo and returns its output.
func runPgbench(t testing.TB, bin, conninfo, password string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(args, conninfo)...)
	cmd.Env = append(cleanPGEnv(), "PGPASSWORD="+password)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pgbench %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

var processedRE = regexp.MustCompile(`number of transactions actually processed: (\d+)`)

// processed is the transaction count pgbench reports.
func processed(t testing.TB, out string) int {
	t.Helper()
	m := processedRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("pgbench output lacks the processed count:\n%s", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// tpcbStatements is the number of statements in pgbench's built-in TPC-B
// like script: BEGIN, 3 UPDATEs, SELECT, INSERT, END.
const tpcbStatements = 7

func TestPgbenchRunsAreFullyRecorded(t *testing.T) {
	s := newStack(t)
	tok, _ := s.token("alice")
	conn := s.conninfo("alice", testTarget, "require")

	// Initialise through the proxy: DDL and client-side COPY of 100000 rows.
	runPgbench(t, s.pgbench, conn, tok, "-i", "-s", "1", "-q")
	initCopy := 0
	for _, r := range s.rec.All() {
		for _, st := range statements(r.WaitClosed(t)) {
			if strings.HasPrefix(st.query, "copy pgbench_accounts") && len(st.tags) == 1 && st.tags[0].Text == "COPY 100000" {
				initCopy++
			}
		}
	}
	if initCopy != 1 {
		t.Fatalf("pgbench -i: recorded %d COPY of 100000 accounts, want 1", initCopy)
	}

	const clients, txPerClient = 3, 40
	for _, mode := range []string{"simple", "extended", "prepared"} {
		t.Run(mode, func(t *testing.T) {
			before := len(s.rec.All())
			out := runPgbench(t, s.pgbench, conn, tok, "-n", "-M", mode, "-c", strconv.Itoa(clients), "-j", "3",
				"-t", strconv.Itoa(txPerClient))
			txs := processed(t, out)
			if txs != clients*txPerClient {
				t.Fatalf("pgbench processed %d transactions, want %d", txs, clients*txPerClient)
			}
			var evs []event.Event
			recs := s.rec.All()[before:]
			for _, r := range recs {
				evs = append(evs, r.WaitClosed(t)...)
			}
			if len(recs) < clients {
				t.Fatalf("%d sessions recorded, want at least %d", len(recs), clients)
			}
			count := func(k event.Kind, match func(event.Event) bool) int {
				n := 0
				for _, e := range kinds(evs, k) {
					if match(e) {
						n++
					}
				}
				return n
			}
			tag := func(want string) int {
				return count(event.KindPGComplete, func(e event.Event) bool { return e.Text == want })
			}
			tx := func(op string) int { return count(event.KindPGTx, func(e event.Event) bool { return e.Op == op }) }
			checks := []check{
				{"UPDATE 1 tags", tag("UPDATE 1"), 3 * txs},
				{"INSERT 0 1 tags", tag("INSERT 0 1"), txs},
				{"BEGIN tags", tag("BEGIN"), txs},
				{"COMMIT tags", tag("COMMIT"), txs},
				{"transaction begins", tx("begin"), txs},
				{"transaction commits", tx("commit"), txs},
				{"errors", len(kinds(evs, event.KindPGError)), 0},
			}
			isBench := func(e event.Event) bool { return strings.Contains(e.Text, "pgbench_") || isTxControl(e.Text) }
			switch mode {
			case "simple":
				checks = append(checks, check{"benchmark queries", count(event.KindPGQuery, func(e event.Event) bool {
					return strings.HasPrefix(e.Text, "BEGIN") || strings.HasPrefix(e.Text, "UPDATE pgbench_") ||
						strings.HasPrefix(e.Text, "SELECT abalance") || strings.HasPrefix(e.Text, "INSERT INTO pgbench_history") ||
						strings.HasPrefix(e.Text, "END")
				}), tpcbStatements * txs})
			case "extended":
				checks = append(checks,
					check{"executes", len(kinds(evs, event.KindPGExecute)), tpcbStatements * txs},
					check{"unnamed parses", count(event.KindPGParse, isBench), tpcbStatements * txs})
			case "prepared":
				checks = append(checks,
					check{"executes", len(kinds(evs, event.KindPGExecute)), tpcbStatements * txs},
					check{"parses (once per client)", count(event.KindPGParse, isBench), tpcbStatements * clients})
			}
			if mode != "simple" {
				binds := kinds(evs, event.KindPGBind)
				withArgs := 0
				for _, b := range binds {
					if b.N == 2 && len(b.Args) == 2 {
						if _, err := strconv.Atoi(b.Args[0]); err == nil {
							withArgs++
						}
					}
				}
				checks = append(checks, check{"binds", len(binds), tpcbStatements * txs}, check{"binds of UPDATE pgbench_accounts/tellers/branches with recorded integer parameters", withArgs, 3 * txs})
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s: recorded %d, want %d", c.what, c.got, c.want)
				}
			}
			if t.Failed() {
				t.Logf("pgbench output:\n%s", out)
			}
		})
	}
}

// check is one expected count.
type check struct {
	what      string
	got, want int
}

func isTxControl(sql string) bool {
	s := strings.ToUpper(strings.TrimSpace(sql))
	return strings.HasPrefix(s, "BEGIN") || strings.HasPrefix(s, "END") || strings.HasPrefix(s, "COMMIT")
}

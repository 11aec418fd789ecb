package pgproxy

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/protocols/postgres/masking"
)

// BenchmarkPgbenchMasking runs pgbench select-only (-M simple and -M
// extended) through the broker twice per run, interleaved: as a role
// without masking rules and as a masked role whose dictionary classifies
// the column the script selects (pgbench_accounts.abalance, masked), so
// every row is decoded and rewritten (unknown fields pass: pgbench reads
// its scale with count(*), which unknown: mask would mask). It reports the masked path's ratio
// to the unmasked one (the target is 0.8 at 8 clients).
func BenchmarkPgbenchMasking(b *testing.B) {
	dict, err := masking.Compile(config.DataDictionary{Classifications: []config.Classification{
		{Name: "balance", Columns: []string{"*.pgbench_accounts.abalance"}},
	}}, []byte("bench"))
	if err != nil {
		b.Fatal(err)
	}
	s := newStack(b, withRecorder(realRecorder(b)), func(t *config.Target, o *Options) {
		t.Roles = append(t.Roles, config.Role{Name: "masked", Masking: map[string]string{"balance": "mask", "unknown": "pass"}})
		o.DataDictionary = dict
	})
	direct := fmt.Sprintf("host=%s port=%d dbname=%s user=%s sslmode=require", s.pg.Host, s.pg.Port, s.db, s.role)
	runPgbench(b, s.pgbench, direct, s.password, "-i", "-q", "-s", strconv.Itoa(benchScale))
	super(b, s.pg, s.db, "VACUUM ANALYZE")
	plain, _ := s.token("alice")
	masked := s.roleToken("alice", "masked")
	conn := s.conninfo("alice", testTarget, "require")
	if out, err := s.runPsql(b, "alice", masked, testTarget, "require", "SELECT abalance FROM pgbench_accounts LIMIT 1;\n", "-At"); err != nil || out != "*\n" {
		b.Fatalf("the masked role is not masked: %q %v", out, err)
	}
	for _, mode := range []string{"simple", "extended"} {
		b.Run(fmt.Sprintf("select-only/%s/clients=8", mode), func(b *testing.B) {
			tps := map[string][]float64{}
			for range b.N {
				for run := 0; run < benchRuns; run++ {
					for _, p := range []struct{ name, token string }{{"plain", plain}, {"masked", masked}} {
						out := runPgbench(b, s.pgbench, conn, p.token, "-n", "-M", mode, "-c", "8", "-j", "2",
							"-T", strconv.Itoa(benchDuration), "-S")
						m := tpsRE.FindStringSubmatch(out)
						if m == nil {
							b.Fatalf("%s: no tps in pgbench output:\n%s", p.name, out)
						}
						v, _ := strconv.ParseFloat(m[1], 64)
						tps[p.name] = append(tps[p.name], v)
					}
				}
			}
			pl, mk := median(tps["plain"]), median(tps["masked"])
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(pl, "tps_plain")
			b.ReportMetric(mk, "tps_masked")
			b.ReportMetric(mk/pl, "x_plain")
		})
	}
}

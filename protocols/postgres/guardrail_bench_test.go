package pgproxy

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/holds"
)

// BenchmarkPgbenchGuardrails compares pgbench through the broker for a
// role without guardrails (the relay path unchanged) and for a role with
// the default guardrails (every statement parsed and classified), both
// recording with the real recorder, runs interleaved.
func BenchmarkPgbenchGuardrails(b *testing.B) {
	plain := newStack(b, withRecorder(realRecorder(b)))
	guarded := newStack(b, withRecorder(realRecorder(b)), func(t *config.Target, o *Options) {
		t.Roles[0].Guardrails = &config.Guardrails{}
		o.Holds = holds.New(0)
	})
	type path struct {
		name, conn, token string
	}
	var paths []path
	for name, s := range map[string]*stack{"plain": plain, "guarded": guarded} {
		direct := fmt.Sprintf("host=%s port=%d dbname=%s user=%s sslmode=require", s.pg.Host, s.pg.Port, s.db, s.role)
		runPgbench(b, s.pgbench, direct, s.password, "-i", "-q", "-s", strconv.Itoa(benchScale))
		super(b, s.pg, s.db, "VACUUM ANALYZE")
		tok, _ := s.token("alice")
		paths = append(paths, path{name, s.conninfo("alice", testTarget, "require"), tok})
	}
	for _, mode := range []string{"simple", "extended"} {
		b.Run("select-only/clients=8/"+mode, func(b *testing.B) {
			tps := map[string][]float64{}
			for range b.N {
				for range benchRuns {
					for _, p := range paths {
						out := runPgbench(b, plain.pgbench, p.conn, p.token, "-n", "-M", mode, "-c", "8", "-j", "2",
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
			pl, gu := median(tps["plain"]), median(tps["guarded"])
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(pl, "tps_plain")
			b.ReportMetric(gu, "tps_guarded")
			b.ReportMetric(gu/pl, "x_plain")
		})
	}
}

package kri_test

import (
	"sync"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/kri"
	"github.com/custos-pam/custos/broker/store/postgres"
	"github.com/custos-pam/custos/deploy/devstack"
)

// Two brokers on one PostgreSQL store, each with its own connection pool
// and evaluator, evaluate a standing crossing over and over at once: one
// alert, one audit record, one action.
func TestKRILimitOneReplicaRaisesPostgres(t *testing.T) {
	pg := devstack.StartPostgres(t)
	dsn := pg.DSN(pg.CreateDatabase(t, "kri"))
	cfg := testConfig()
	cfg.Users = append(cfg.Users, config.User{Name: "mallory"})
	cfg.Indicators.Limits = []config.Limit{{Indicator: "users_without_mfa", Op: ">", Value: 0}}
	n := &notices{}
	var stores []broker.Store
	var evs []*kri.Evaluator
	for range 2 {
		st, err := postgres.Open(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		c, err := kri.New(kri.Options{Config: cfg, Store: st})
		if err != nil {
			t.Fatal(err)
		}
		ev, err := kri.NewEvaluator(kri.EvaluatorOptions{Computer: c, Store: st, Audit: audit.NewLog(st), Notifier: n})
		if err != nil {
			t.Fatal(err)
		}
		stores, evs = append(stores, st), append(evs, ev)
	}
	var wg sync.WaitGroup
	for range 4 {
		for _, ev := range evs {
			wg.Go(func() {
				if _, err := ev.Evaluate(t.Context()); err != nil {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	var crossed []broker.AuditRecord
	if err := stores[0].View(t.Context(), func(tx broker.Tx) error {
		var err error
		crossed, err = tx.ListAudit(broker.AuditFilter{ActionPrefix: kri.AuditLimitCrossed, Since: time.Now().Add(-time.Hour)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	acts, err := evs[1].Actions(t.Context(), true)
	if n.count() != 1 || len(crossed) != 1 || err != nil || len(acts) != 1 {
		t.Fatalf("two replicas: %d notices, %d kri.limit_crossed records, %d actions (%v); want one each", n.count(), len(crossed), len(acts), err)
	}
}

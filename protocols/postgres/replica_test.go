package pgproxy

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	pgstore "github.com/custos-pam/custos/broker/store/postgres"
	"github.com/custos-pam/custos/deploy/devstack"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// storeGrants looks grants up in a real state store by ID, as the access
// service does.
type storeGrants struct{ st broker.Store }

func (g storeGrants) GetGrant(ctx context.Context, id string) (broker.Grant, error) {
	var out broker.Grant
	err := g.st.View(ctx, func(tx broker.Tx) error {
		var err error
		out, err = tx.GetGrant(id)
		return err
	})
	return out, err
}

// TestRevocationMissedByListenerEndsSession: two brokers share a
// PostgreSQL state store. The one running the proxy loses its LISTEN
// connection; while it is down the other revokes the grant of a live pgx
// session, so the notification is never delivered. The session still
// ends, with the revocation's reason, through the resync after the
// listener reconnects and, even with no grant event seen at all, through
// the periodic sweep.
func TestRevocationMissedByListenerEndsSession(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sweep time.Duration
		// watch delivers the store's grant events (and resyncs) to the
		// proxy, as the broker does.
		watch bool
		// within bounds the time from the revocation to the client's
		// error.
		within time.Duration
	}{
		// As the broker runs: events, resync and a 2s sweep.
		{"broker", 2 * time.Second, true, 2*time.Second + 1500*time.Millisecond},
		// The resync alone: the sweep is an hour away.
		{"resync", time.Hour, true, 5 * time.Second},
		// The sweep alone: no event, not even the resync, is seen.
		{"sweep", 2 * time.Second, false, 2*time.Second + 1500*time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			pg := devstack.StartPostgres(t)
			stateDB := pg.CreateDatabase(t, "state")
			// here runs the proxy; other is another broker on the same
			// store.
			var here, other *pgstore.Store
			for _, st := range []**pgstore.Store{&here, &other} {
				var err error
				if *st, err = pgstore.Open(ctx, pg.DSN(stateDB)); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { (*st).Close() })
			}
			s := newStack(t, func(_ *config.Target, o *Options) { o.SessionSweep, o.Grants = tc.sweep, storeGrants{here} })
			if tc.watch {
				wctx, cancel := context.WithCancel(ctx)
				t.Cleanup(cancel)
				go s.proxy.WatchGrants(here.GrantEvents(wctx))
			}

			g := s.grant("alice")
			if err := here.Update(ctx, func(tx broker.Tx) error { return tx.PutGrant(g) }); err != nil {
				t.Fatal(err)
			}
			conn := s.connect(t, "alice", s.auth.issue(g))
			if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
				t.Fatal(err)
			}

			// Cut the listening connections and wait until they are gone.
			su, err := pgx.Connect(ctx, pg.DSN(stateDB))
			if err != nil {
				t.Fatal(err)
			}
			defer su.Close(ctx)
			var cut int
			if err := su.QueryRow(ctx, "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "+
				"WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()").Scan(&cut); err != nil || cut == 0 {
				t.Fatalf("listening connections cut: %d, %v", cut, err)
			}
			// The other broker revokes while this one is deaf.
			revoked := time.Now()
			if err := other.Update(ctx, func(tx broker.Tx) error {
				cur, err := tx.GetGrant(g.ID)
				if err != nil {
					return err
				}
				cur.State, cur.RevokedAt, cur.RevokedBy, cur.RevokeReason = broker.GrantRevoked, time.Now().UTC(), "carol", "revoked by carol: INC-42"
				if err := tx.PutGrant(cur); err != nil {
					return err
				}
				tx.NotifyGrant(broker.GrantEvent{GrantID: g.ID, State: broker.GrantRevoked, Reason: cur.RevokeReason})
				return nil
			}); err != nil {
				t.Fatal(err)
			}

			var qerr error
			for deadline := revoked.Add(tc.within + 5*time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if _, qerr = conn.Exec(ctx, "SELECT 1"); qerr != nil {
					break
				}
			}
			took := time.Since(revoked)
			if qerr == nil {
				t.Fatalf("session still runs %v after its grant was revoked on another broker", took)
			}
			var pe *pgconn.PgError
			if !errors.As(qerr, &pe) || pe.Code != "57P01" || pe.Message != "access revoked: revoked by carol: INC-42" {
				t.Fatalf("client saw %v, want FATAL 57P01 access revoked: revoked by carol: INC-42", qerr)
			}
			if took > tc.within {
				t.Fatalf("session ended %v after the revocation, want within %v", took, tc.within)
			}
			s.waitNoSessions(t)
		})
	}
}

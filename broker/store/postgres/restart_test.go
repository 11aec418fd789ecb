package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/deploy/devstack"
)

// The database server restarts under an open Store: while it is down,
// View, Update and Ping fail at once with ErrStoreUnavailable (and a
// domain error passes unmarked); once it is back, the same Store works
// again without being reopened, every grant written before is there
// unchanged, and its listener reconnects: a resync first, then another
// Store's events.
func TestStoreSurvivesServerRestart(t *testing.T) {
	pg := devstack.StartOwnPostgres(t)
	dsn := pg.DSN(pg.CreateDatabase(t, "restart"))
	a, b := open(t, dsn), open(t, dsn)
	ctx := t.Context()
	end := time.Date(2030, 1, 2, 3, 4, 5, 123456000, time.UTC)
	if err := a.Update(ctx, func(tx broker.Tx) error {
		return tx.PutGrant(broker.Grant{ID: "grt_kept", State: broker.GrantActive, EndsAt: end})
	}); err != nil {
		t.Fatal(err)
	}
	events := b.GrantEvents(ctx)

	pg.Stop(t)
	for name, err := range map[string]error{
		"view":   a.View(ctx, func(tx broker.Tx) error { _, err := tx.GetGrant("grt_kept"); return err }),
		"update": a.Update(ctx, func(tx broker.Tx) error { return tx.PutGrant(broker.Grant{ID: "grt_lost"}) }),
		"ping":   a.Ping(ctx),
	} {
		if !errors.Is(err, broker.ErrStoreUnavailable) {
			t.Errorf("%s with the server down: %v, want ErrStoreUnavailable", name, err)
		}
	}
	pg.Start(t)

	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err = a.Ping(ctx); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("store not back 10s after the server: %v", err)
	}
	var got broker.Grant
	if err := a.View(ctx, func(tx broker.Tx) error { got, err = tx.GetGrant("grt_kept"); return err }); err != nil {
		t.Fatal(err)
	}
	if !got.EndsAt.Equal(end) || got.State != broker.GrantActive {
		t.Errorf("grant after the restart: %+v", got)
	}
	notFound := a.View(ctx, func(tx broker.Tx) error { _, err := tx.GetGrant("grt_lost"); return err })
	if !errors.Is(notFound, broker.ErrNotFound) || errors.Is(notFound, broker.ErrStoreUnavailable) {
		t.Errorf("grant written while the server was down: %v, want not found", notFound)
	}

	select {
	case ev := <-events:
		if !ev.Resync {
			t.Fatalf("first event after the restart = %+v, want a resync", ev)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("listener not back 20s after the restart")
	}
	sent := broker.GrantEvent{GrantID: "grt_kept", State: broker.GrantRevoked, Reason: "after the restart"}
	if err := a.Update(ctx, func(tx broker.Tx) error { tx.NotifyGrant(sent); return nil }); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		if ev.GrantID != sent.GrantID || ev.Reason != sent.Reason {
			t.Fatalf("event after the restart = %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("another store's event not delivered after the restart")
	}
}

func TestLostConnection(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"connect refused", &pgconn.ConnectError{}, true},
		{"network", fmt.Errorf("begin: %w", &net.OpError{Op: "read", Err: errors.New("reset")}), true},
		{"eof", fmt.Errorf("query: %w", io.ErrUnexpectedEOF), true},
		{"conn closed", fmt.Errorf("exec: %w", pgconn.ErrConnClosed), true},
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, true},
		{"starting up", &pgconn.PgError{Code: "57P03"}, true},
		{"connection failure", &pgconn.PgError{Code: "08006"}, true},
		{"unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"deadlock", &pgconn.PgError{Code: "40P01"}, false},
		{"not found", broker.ErrNotFound, false},
		{"refusal", broker.Refuse(broker.KindConflict, "already_decided", "decided"), false},
		{"cancelled", context.Canceled, false},
	} {
		if got := lostConnection(c.err); got != c.want {
			t.Errorf("%s: lostConnection = %v, want %v", c.name, got, c.want)
		}
		if got := errors.Is(unavailable(c.err), broker.ErrStoreUnavailable); got != c.want {
			t.Errorf("%s: marked unavailable = %v, want %v", c.name, got, c.want)
		}
	}
}

package storetest

import (
	"errors"
	"testing"

	"github.com/custos-pam/custos/broker"
)

func testLimits(t *testing.T, s broker.Store) {
	update(t, s, func(tx broker.Tx) error {
		if err := tx.PutLimit("signin/a", []byte(`{"n":1}`), at(0)); err != nil {
			return err
		}
		return tx.PutLimit("signin/b", []byte(`{"n":2}`), at(60e9))
	})
	update(t, s, func(tx broker.Tx) error { return tx.PutLimit("signin/a", []byte(`{"n":3}`), at(30e9)) })
	view(t, s, func(tx broker.Tx) error {
		if got, err := tx.GetLimit("signin/a"); err != nil || string(got) != `{"n":3}` {
			t.Errorf("GetLimit after replace = %q, %v", got, err)
		}
		if _, err := tx.GetLimit("nope"); !errors.Is(err, broker.ErrNotFound) {
			t.Errorf("GetLimit(nope) = %v, want ErrNotFound", err)
		}
		if err := tx.PutLimit("x", nil, at(0)); err == nil {
			t.Error("PutLimit in a read-only transaction succeeded")
		}
		return nil
	})
	update(t, s, func(tx broker.Tx) error {
		n, err := tx.DeleteExpiredLimits(at(31e9))
		if err != nil || n != 1 {
			t.Errorf("DeleteExpiredLimits = %d, %v; want 1", n, err)
		}
		return nil
	})
	view(t, s, func(tx broker.Tx) error {
		if _, err := tx.GetLimit("signin/a"); !errors.Is(err, broker.ErrNotFound) {
			t.Errorf("expired limit still there: %v", err)
		}
		if got, err := tx.GetLimit("signin/b"); err != nil || string(got) != `{"n":2}` {
			t.Errorf("GetLimit(b) = %q, %v", got, err)
		}
		return nil
	})
}

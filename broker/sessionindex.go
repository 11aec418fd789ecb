package broker

import (
	"context"
	"fmt"
)

// SessionIndex keeps the searchable session list in a Store, one
// transaction per call. The recorder declares the interface it writes
// through; the broker's wiring passes SessionIndex{Store: st}.
type SessionIndex struct {
	Store Store
}

// PutSession creates or replaces a session's index entry.
func (i SessionIndex) PutSession(ctx context.Context, s Session) error {
	return i.Store.Update(ctx, func(tx Tx) error { return tx.PutSession(s) })
}

// GetSession returns a session's index entry.
func (i SessionIndex) GetSession(ctx context.Context, id string) (Session, error) {
	var s Session
	err := i.Store.View(ctx, func(tx Tx) error {
		var err error
		s, err = tx.GetSession(id)
		return err
	})
	if err != nil {
		return s, fmt.Errorf("session index: %w", err)
	}
	return s, nil
}

package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/custos-pam/custos/broker"
)

// indexKey is the store state key holding every lease this broker issued
// and has not yet revoked, so a restarted broker revokes the leases of
// grants that ended while it was down.
const indexKey = "creds/leases"

// leaseRecord is what is kept about an issued lease: never the password.
type leaseRecord struct {
	LeaseID   string    `json:"lease_id"`
	Kind      string    `json:"kind"`
	GrantID   string    `json:"grant_id"`
	SessionID string    `json:"session_id,omitempty"`
	Username  string    `json:"username"`
	Target    string    `json:"target"`
	VaultRole string    `json:"vault_role"`
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// GrantEnd is the grant's end when the lease was issued; the sweep
	// revokes the lease once it has passed even if no event said so.
	GrantEnd time.Time `json:"grant_end"`
}

// leaseIndex is the in-memory copy of the persisted index, guarded by
// Issuer.mu. The store's document is the truth: every change is a
// read-modify-write inside one store transaction, so broker replicas
// sharing a store never drop each other's records.
type leaseIndex struct {
	loaded bool
	leases map[string]leaseRecord
}

type indexDoc struct {
	Leases []leaseRecord `json:"leases"`
}

func readIndex(tx broker.Tx) (map[string]leaseRecord, error) {
	out := map[string]leaseRecord{}
	b, err := tx.GetState(indexKey)
	if errors.Is(err, broker.ErrNotFound) || (err == nil && len(b) == 0) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	var doc indexDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("decode %s: %w", indexKey, err)
	}
	for _, r := range doc.Leases {
		out[r.LeaseID] = r
	}
	return out, nil
}

// load reads the persisted index into memory.
func (i *Issuer) load(ctx context.Context) error {
	if i.store == nil {
		return nil
	}
	var m map[string]leaseRecord
	err := i.store.View(ctx, func(tx broker.Tx) error {
		var err error
		m, err = readIndex(tx)
		return err
	})
	if err != nil {
		return fmt.Errorf("load lease index: %w", err)
	}
	i.mu.Lock()
	i.index.leases, i.index.loaded = m, true
	i.mu.Unlock()
	return nil
}

// remember records a lease.
func (i *Issuer) remember(ctx context.Context, r leaseRecord) error {
	return i.updateIndex(ctx, []leaseRecord{r}, nil)
}

// drop removes revoked leases from the index.
func (i *Issuer) drop(ctx context.Context, leaseIDs ...string) error {
	if len(leaseIDs) == 0 {
		return nil
	}
	return i.updateIndex(ctx, nil, leaseIDs)
}

// updateIndex applies a change to the persisted index and refreshes the
// in-memory copy from it. It runs even when ctx is cancelled: a lease
// that exists must be on record.
func (i *Issuer) updateIndex(ctx context.Context, add []leaseRecord, remove []string) error {
	apply := func(m map[string]leaseRecord) {
		for _, r := range add {
			m[r.LeaseID] = r
		}
		for _, id := range remove {
			delete(m, id)
		}
	}
	if i.store == nil {
		i.mu.Lock()
		apply(i.index.leases)
		i.mu.Unlock()
		return nil
	}
	var m map[string]leaseRecord
	err := i.store.Update(context.WithoutCancel(ctx), func(tx broker.Tx) error {
		var err error
		if m, err = readIndex(tx); err != nil {
			return err
		}
		apply(m)
		recs := make([]leaseRecord, 0, len(m))
		for _, r := range m {
			recs = append(recs, r)
		}
		sortRecords(recs)
		b, err := json.Marshal(indexDoc{Leases: recs})
		if err != nil {
			return err
		}
		return tx.PutState(indexKey, b)
	})
	if err != nil {
		return fmt.Errorf("update lease index: %w", err)
	}
	i.mu.Lock()
	i.index.leases, i.index.loaded = m, true
	i.mu.Unlock()
	return nil
}

// records returns the indexed leases that match keep, oldest first.
func (i *Issuer) records(keep func(leaseRecord) bool) []leaseRecord {
	i.mu.Lock()
	defer i.mu.Unlock()
	out := make([]leaseRecord, 0, len(i.index.leases))
	for _, r := range i.index.leases {
		if keep(r) {
			out = append(out, r)
		}
	}
	sortRecords(out)
	return out
}

func sortRecords(out []leaseRecord) {
	sort.Slice(out, func(a, b int) bool {
		if !out[a].IssuedAt.Equal(out[b].IssuedAt) {
			return out[a].IssuedAt.Before(out[b].IssuedAt)
		}
		return out[a].LeaseID < out[b].LeaseID
	})
}

package breakglass

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/custos-pam/custos/broker"
)

// Store keys. Each account and each drill is one small JSON document;
// drillIndexKey lists the drills so reports need not know their ids.
const (
	accountKeyPrefix = "breakglass/account/"
	drillKeyPrefix   = "breakglass/drill/"
	drillIndexKey    = "breakglass/drills"
	heartbeatKey     = "breakglass/heartbeat"
)

// drillRef is one entry of the drill index.
type drillRef struct {
	ID        string    `json:"id"`
	Account   string    `json:"account"`
	Quarter   string    `json:"quarter"`
	StartedAt time.Time `json:"started_at"`
	Outcome   string    `json:"outcome"`
}

func getJSON[T any](tx broker.Tx, key string) (T, bool, error) {
	var v T
	b, err := tx.GetState(key)
	if errors.Is(err, broker.ErrNotFound) {
		return v, false, nil
	}
	if err != nil {
		return v, false, fmt.Errorf("read %s: %w", key, err)
	}
	if len(b) == 0 {
		return v, false, nil
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, false, fmt.Errorf("decode %s: %w", key, err)
	}
	return v, true, nil
}

func putJSON(tx broker.Tx, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	if err := tx.PutState(key, b); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}

// loadAccount returns the account's state, a fresh sealed one when the
// store has none yet.
func loadAccount(tx broker.Tx, name string, now time.Time) (Account, error) {
	a, ok, err := getJSON[Account](tx, accountKeyPrefix+name)
	if err != nil {
		return Account{}, err
	}
	if !ok {
		a = Account{Name: name, State: StateSealed, FirstSeen: now.UTC()}
	}
	return a, nil
}

func saveAccount(tx broker.Tx, a Account) error { return putJSON(tx, accountKeyPrefix+a.Name, a) }

func loadDrill(tx broker.Tx, id string) (Drill, error) {
	d, ok, err := getJSON[Drill](tx, drillKeyPrefix+id)
	if err != nil {
		return Drill{}, err
	}
	if !ok {
		return Drill{}, notFound("no drill %s", id)
	}
	return d, nil
}

// saveDrill stores the drill and keeps its index entry current.
func saveDrill(tx broker.Tx, d Drill) error {
	if err := putJSON(tx, drillKeyPrefix+d.ID, d); err != nil {
		return err
	}
	idx, _, err := getJSON[[]drillRef](tx, drillIndexKey)
	if err != nil {
		return err
	}
	ref := drillRef{ID: d.ID, Account: d.Account, Quarter: d.Quarter, StartedAt: d.StartedAt, Outcome: d.Outcome}
	if i := slices.IndexFunc(idx, func(r drillRef) bool { return r.ID == d.ID }); i >= 0 {
		idx[i] = ref
	} else {
		idx = append(idx, ref)
	}
	return putJSON(tx, drillIndexKey, idx)
}

func loadDrillIndex(tx broker.Tx) ([]drillRef, error) {
	idx, _, err := getJSON[[]drillRef](tx, drillIndexKey)
	return idx, err
}

package identity

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/custos-pam/custos/broker"
)

// flowsStateKey is the state-store document holding the sign-ins in
// progress, so the replica that receives the callback (or the CLI's next
// call) need not be the one that began it. Entries are keyed by the
// SHA-256 of their state or handle and pruned at every write.
const flowsStateKey = "identity.sso_flows"

// flow is a code flow in progress.
type flow struct {
	Purpose  string    `json:"purpose"`
	Nonce    string    `json:"nonce"`
	Verifier string    `json:"verifier"`
	Redirect string    `json:"redirect"`
	Source   string    `json:"source"`
	Expires  time.Time `json:"expires"`
}

// deviceFlow is a device sign-in in progress.
type deviceFlow struct {
	DeviceCode string    `json:"device_code"`
	Interval   int64     `json:"interval"`
	Source     string    `json:"source"`
	Expires    time.Time `json:"expires"`
}

type flowDoc struct {
	Flows   map[string]flow       `json:"flows"`
	Devices map[string]deviceFlow `json:"devices"`
}

// errFlowsFull is returned by the table when a source (or everyone) has
// too many sign-ins in progress.
var errFlowsFull = errors.New("sso: too many sign-ins in progress")

// flowTable keeps sign-ins in progress in the state store. Update
// transactions are serialized across replicas, so taking an entry is
// single-use everywhere.
type flowTable struct {
	store broker.Store
	now   func() time.Time
}

func flowKey(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func readFlows(tx broker.Tx) (flowDoc, error) {
	d := flowDoc{Flows: map[string]flow{}, Devices: map[string]deviceFlow{}}
	b, err := tx.GetState(flowsStateKey)
	if errors.Is(err, broker.ErrNotFound) {
		return d, nil
	}
	if err != nil {
		return d, err
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("decode %s: %w", flowsStateKey, err)
	}
	if d.Flows == nil {
		d.Flows = map[string]flow{}
	}
	if d.Devices == nil {
		d.Devices = map[string]deviceFlow{}
	}
	return d, nil
}

// update runs fn on the document with expired entries dropped, and
// writes it back.
func (t *flowTable) update(ctx context.Context, fn func(d *flowDoc) error) error {
	return t.store.Update(ctx, func(tx broker.Tx) error {
		d, err := readFlows(tx)
		if err != nil {
			return err
		}
		now := t.now()
		for k, f := range d.Flows {
			if now.After(f.Expires) {
				delete(d.Flows, k)
			}
		}
		for k, f := range d.Devices {
			if now.After(f.Expires) {
				delete(d.Devices, k)
			}
		}
		if err := fn(&d); err != nil {
			return err
		}
		b, err := json.Marshal(d)
		if err != nil {
			return err
		}
		return tx.PutState(flowsStateKey, b)
	})
}

// full reports whether source may start no more sign-ins.
func (d *flowDoc) full(source string) bool {
	if len(d.Flows)+len(d.Devices) >= maxFlows {
		return true
	}
	n := 0
	for _, f := range d.Flows {
		if f.Source == source {
			n++
		}
	}
	for _, f := range d.Devices {
		if f.Source == source {
			n++
		}
	}
	return n >= maxFlowsPerSource
}

// add records a code flow under state, or errFlowsFull.
func (t *flowTable) add(ctx context.Context, state string, f flow) error {
	return t.update(ctx, func(d *flowDoc) error {
		if d.full(f.Source) {
			return errFlowsFull
		}
		d.Flows[flowKey(state)] = f
		return nil
	})
}

// take removes and returns the code flow of state; false when there is
// none (unknown, used or expired).
func (t *flowTable) take(ctx context.Context, state string) (flow, bool, error) {
	var f flow
	var ok bool
	err := t.update(ctx, func(d *flowDoc) error {
		k := flowKey(state)
		f, ok = d.Flows[k]
		delete(d.Flows, k)
		return nil
	})
	return f, ok, err
}

// checkRoom reports errFlowsFull when source may start no device sign-in.
func (t *flowTable) checkRoom(ctx context.Context, source string) error {
	var full bool
	err := t.store.View(ctx, func(tx broker.Tx) error {
		d, err := readFlows(tx)
		now := t.now()
		for k, f := range d.Flows {
			if now.After(f.Expires) {
				delete(d.Flows, k)
			}
		}
		for k, f := range d.Devices {
			if now.After(f.Expires) {
				delete(d.Devices, k)
			}
		}
		full = d.full(source)
		return err
	})
	if err == nil && full {
		return errFlowsFull
	}
	return err
}

// addDevice records a device sign-in under handle.
func (t *flowTable) addDevice(ctx context.Context, handle string, f deviceFlow) error {
	return t.update(ctx, func(d *flowDoc) error {
		if d.full(f.Source) {
			return errFlowsFull
		}
		d.Devices[flowKey(handle)] = f
		return nil
	})
}

// device returns the device sign-in of handle, without removing it.
func (t *flowTable) device(ctx context.Context, handle string) (deviceFlow, bool, error) {
	var f deviceFlow
	var ok bool
	err := t.store.View(ctx, func(tx broker.Tx) error {
		d, err := readFlows(tx)
		f, ok = d.Devices[flowKey(handle)]
		return err
	})
	if ok && t.now().After(f.Expires) {
		ok = false
	}
	return f, ok, err
}

// takeDevice removes the device sign-in of handle and reports whether it
// was still there (only one poller gets the token).
func (t *flowTable) takeDevice(ctx context.Context, handle string) (bool, error) {
	var ok bool
	err := t.update(ctx, func(d *flowDoc) error {
		k := flowKey(handle)
		_, ok = d.Devices[k]
		delete(d.Devices, k)
		return nil
	})
	return ok, err
}

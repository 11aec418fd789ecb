package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/custos-pam/custos/broker"
)

// Tx implements broker.Tx over one driver transaction. It is valid only
// inside the View or Update call that created it.
type Tx struct {
	ctx      context.Context
	c        Conn
	d        *Dialect
	readOnly bool
	events   []broker.GrantEvent
}

var _ broker.Tx = (*Tx)(nil)

// NewTx wraps a driver transaction. readOnly makes every write fail.
func NewTx(ctx context.Context, c Conn, d *Dialect, readOnly bool) *Tx {
	return &Tx{ctx: ctx, c: c, d: d, readOnly: readOnly}
}

// Events returns the grant events announced in this transaction, in order.
func (t *Tx) Events() []broker.GrantEvent { return t.events }

// NotifyGrant queues ev for delivery after commit. It does nothing in a
// read-only transaction.
func (t *Tx) NotifyGrant(ev broker.GrantEvent) {
	if !t.readOnly {
		t.events = append(t.events, ev)
	}
}

// errorf prefixes an error with the driver name and operation.
func (t *Tx) errorf(format string, args ...any) error {
	return fmt.Errorf(t.d.Name+": "+format, args...)
}

func (t *Tx) writable(op string) error {
	if t.readOnly {
		return t.errorf("%s: read-only transaction", op)
	}
	return nil
}

// upsert inserts a row or replaces the row with the same first column.
func (t *Tx) upsert(table string, cols []string, args ...any) error {
	ph := make([]string, len(cols))
	set := make([]string, 0, len(cols)-1)
	for i, c := range cols {
		ph[i] = fmt.Sprintf("$%d", i+1)
		if i > 0 {
			set = append(set, c+" = excluded."+c)
		}
	}
	q := "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES (" + strings.Join(ph, ", ") +
		") ON CONFLICT (" + cols[0] + ") DO UPDATE SET " + strings.Join(set, ", ")
	_, err := t.c.Exec(t.ctx, q, args...)
	if err != nil && t.d.IsUniqueViolation != nil && t.d.IsUniqueViolation(err) {
		return fmt.Errorf("%w: %w", broker.ErrConflict, err)
	}
	return err
}

// getOne scans the single row a query returns into dest, or returns
// broker.ErrNotFound.
func (t *Tx) getOne(q string, args []any, dest ...any) error {
	rows, err := t.c.Query(t.ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return err
		}
		return broker.ErrNotFound
	}
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	return rows.Err()
}

// each calls scan for every row a query returns.
func (t *Tx) each(q string, args []any, scan func(Rows) error) error {
	rows, err := t.c.Query(t.ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// getData loads the JSON data column of one row by id into v.
func (t *Tx) getData(table, what, id string, v any) error {
	var data string
	if err := t.getOne("SELECT data FROM "+table+" WHERE id = $1", []any{id}, &data); err != nil {
		return t.errorf("get %s %s: %w", what, id, err)
	}
	if err := json.Unmarshal([]byte(data), v); err != nil {
		return t.errorf("get %s %s: decode: %w", what, id, err)
	}
	return nil
}

// listData runs a query selecting the data column and decodes each row.
func listData[T any](t *Tx, what, q string, args []any) ([]T, error) {
	var out []T
	err := t.each(q, args, func(r Rows) error {
		var data string
		if err := r.Scan(&data); err != nil {
			return err
		}
		var v T
		if err := json.Unmarshal([]byte(data), &v); err != nil {
			return fmt.Errorf("decode: %w", err)
		}
		out = append(out, v)
		return nil
	})
	if err != nil {
		return nil, t.errorf("list %s: %w", what, err)
	}
	return out, nil
}

func encode(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode: %w", err)
	}
	return string(b), nil
}

// GetState returns the document stored under key.
func (t *Tx) GetState(key string) ([]byte, error) {
	var v []byte
	if err := t.getOne("SELECT value FROM state WHERE key = $1", []any{key}, &v); err != nil {
		return nil, t.errorf("get state %s: %w", key, err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// PutState stores value under key, replacing what was there.
func (t *Tx) PutState(key string, value []byte) error {
	if err := t.writable("put state"); err != nil {
		return err
	}
	if key == "" {
		return t.errorf("put state: empty key")
	}
	if value == nil {
		value = []byte{}
	}
	if err := t.upsert("state", []string{"key", "value", "updated_at"}, key, value, fmtTime(nowUTC())); err != nil {
		return t.errorf("put state %s: %w", key, err)
	}
	return nil
}

// isNotFound is errors.Is(err, broker.ErrNotFound), for brevity.
func isNotFound(err error) bool { return errors.Is(err, broker.ErrNotFound) }

// ListStateKeys returns every key in the state table, sorted, so a backup
// can copy the documents of every feature without knowing their keys.
func (t *Tx) ListStateKeys() ([]string, error) {
	var out []string
	err := t.each("SELECT key FROM state ORDER BY key", nil, func(r Rows) error {
		var k string
		if err := r.Scan(&k); err != nil {
			return err
		}
		out = append(out, k)
		return nil
	})
	if err != nil {
		return nil, t.errorf("list state keys: %w", err)
	}
	return out, nil
}

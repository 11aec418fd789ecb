package sqlstore

import "time"

// GetLimit returns the rate-limit document stored under key, expired or
// not.
func (t *Tx) GetLimit(key string) ([]byte, error) {
	var v []byte
	if err := t.getOne("SELECT value FROM limits WHERE key = $1", []any{key}, &v); err != nil {
		return nil, t.errorf("get limit: %w", err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// PutLimit stores value under key until expires, replacing what was
// there.
func (t *Tx) PutLimit(key string, value []byte, expires time.Time) error {
	if err := t.writable("put limit"); err != nil {
		return err
	}
	if key == "" {
		return t.errorf("put limit: empty key")
	}
	if value == nil {
		value = []byte{}
	}
	if err := t.upsert("limits", []string{"key", "value", "expires_at"}, key, value, fmtTime(utc(expires))); err != nil {
		return t.errorf("put limit: %w", err)
	}
	return nil
}

// DeleteExpiredLimits deletes the documents whose expiry is before the
// given instant.
func (t *Tx) DeleteExpiredLimits(before time.Time) (int, error) {
	if err := t.writable("delete expired limits"); err != nil {
		return 0, err
	}
	n, err := t.c.Exec(t.ctx, "DELETE FROM limits WHERE expires_at < $1", fmtTime(utc(before)))
	if err != nil {
		return 0, t.errorf("delete expired limits: %w", err)
	}
	return int(n), nil
}

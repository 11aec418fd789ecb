package recorder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/recorder/store"
)

// CheckpointStore keeps audit checkpoints next to the recordings: objects
// under <prefix>audit/checkpoints/ in the recordings store, written once
// and, on an Object Lock store, under COMPLIANCE retention as long as the
// recordings'. It implements audit.CheckpointStore.
type CheckpointStore struct {
	st        ObjectStore
	dir       string
	retention time.Duration
	legalHold bool
}

var _ audit.CheckpointStore = (*CheckpointStore)(nil)

// NewCheckpointStore returns the checkpoint store in st under prefix (the
// recordings' key prefix). Retention (default DefaultRetention) and
// legalHold apply to every checkpoint on an Object Lock store.
func NewCheckpointStore(st ObjectStore, prefix string, retention time.Duration, legalHold bool) *CheckpointStore {
	if retention <= 0 {
		retention = DefaultRetention
	}
	return &CheckpointStore{st: st, dir: prefix + audit.CheckpointDir, retention: retention, legalHold: legalHold}
}

// Key returns the object key of a checkpoint name.
func (c *CheckpointStore) Key(name string) string { return c.dir + name }

// PutCheckpoint writes a new checkpoint object.
func (c *CheckpointStore) PutCheckpoint(ctx context.Context, name string, body []byte) error {
	if !audit.ValidCheckpointName(name) {
		return fmt.Errorf("checkpoint store: invalid name %q", name)
	}
	sum := sha256.Sum256(body)
	opts := store.PutOptions{SHA256: hex.EncodeToString(sum[:])}
	if c.st.ObjectLock() {
		opts.RetainUntil = time.Now().Add(c.retention).UTC()
		opts.LegalHold = c.legalHold
	}
	if _, err := c.st.Put(ctx, c.Key(name), body, opts); err != nil {
		return fmt.Errorf("checkpoint store: %w", err)
	}
	return nil
}

// ListCheckpoints lists every version and delete marker under the
// checkpoint folder. Objects in sub-folders or with other names are
// listed too, under their path, so that they fail verification instead
// of going unseen.
func (c *CheckpointStore) ListCheckpoints(ctx context.Context) ([]audit.CheckpointObject, error) {
	vs, err := c.st.Versions(ctx, c.dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint store: %w", err)
	}
	out := make([]audit.CheckpointObject, 0, len(vs))
	for _, v := range vs {
		out = append(out, audit.CheckpointObject{Name: strings.TrimPrefix(v.Key, c.dir), VersionID: v.VersionID, Deleted: v.DeleteMarker})
	}
	return out, nil
}

// ReadCheckpoint reads one version with its retention.
func (c *CheckpointStore) ReadCheckpoint(ctx context.Context, o audit.CheckpointObject) (audit.CheckpointData, error) {
	obj, err := c.st.Get(ctx, c.Key(o.Name), o.VersionID)
	if err != nil {
		return audit.CheckpointData{}, fmt.Errorf("checkpoint store: %w", err)
	}
	return audit.CheckpointData{Body: obj.Body, ObjectLock: c.st.ObjectLock(),
		RetentionMode: obj.RetentionMode, RetainUntil: obj.RetainUntil}, nil
}

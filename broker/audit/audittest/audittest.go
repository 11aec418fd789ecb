// Package audittest holds what tests of the audit log share: an in-memory
// checkpoint store that keeps versions and delete markers the way a
// versioned bucket does, and a helper that rewrites a record in a store's
// database and recomputes every hash after it, as someone with write
// access to the database could.
package audittest

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"testing"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// Checkpoints is an in-memory audit.CheckpointStore. Every Put or Overwrite
// adds a version; Delete adds a delete marker.
type Checkpoints struct {
	mu       sync.Mutex
	n        int
	versions map[string][]version
	// Locked makes reads report COMPLIANCE retention.
	Locked bool
}

type version struct {
	id      string
	body    []byte
	deleted bool
}

var _ audit.CheckpointStore = (*Checkpoints)(nil)

// PutCheckpoint stores a new object; an existing name is refused.
func (c *Checkpoints) PutCheckpoint(_ context.Context, name string, body []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.versions[name]) > 0 {
		return fmt.Errorf("checkpoint %s exists", name)
	}
	c.add(name, body, false)
	return nil
}

func (c *Checkpoints) add(name string, body []byte, deleted bool) {
	if c.versions == nil {
		c.versions = map[string][]version{}
	}
	c.n++
	c.versions[name] = append(c.versions[name], version{id: "v" + strconv.Itoa(c.n), body: append([]byte(nil), body...), deleted: deleted})
}

// Overwrite writes another version of name, as someone with write access
// to the bucket could.
func (c *Checkpoints) Overwrite(name string, body []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.add(name, body, false)
}

// Delete places a delete marker over name.
func (c *Checkpoints) Delete(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.add(name, nil, true)
}

// Purge removes name and all its versions, as deleting a file from a
// local directory store does.
func (c *Checkpoints) Purge(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.versions, name)
}

// Names returns the names of the stored objects, sorted.
func (c *Checkpoints) Names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for n := range c.versions {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Body returns the first version of name.
func (c *Checkpoints) Body(name string) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if vs := c.versions[name]; len(vs) > 0 {
		return vs[0].body
	}
	return nil
}

// ListCheckpoints lists every version and delete marker.
func (c *Checkpoints) ListCheckpoints(context.Context) ([]audit.CheckpointObject, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []audit.CheckpointObject
	for name, vs := range c.versions {
		for _, v := range vs {
			out = append(out, audit.CheckpointObject{Name: name, VersionID: v.id, Deleted: v.deleted})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name+out[i].VersionID < out[j].Name+out[j].VersionID })
	return out, nil
}

// ReadCheckpoint reads one version.
func (c *Checkpoints) ReadCheckpoint(_ context.Context, o audit.CheckpointObject) (audit.CheckpointData, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, v := range c.versions[o.Name] {
		if v.id == o.VersionID && !v.deleted {
			d := audit.CheckpointData{Body: v.body, ObjectLock: c.Locked}
			if c.Locked {
				d.RetentionMode = "COMPLIANCE"
			}
			return d, nil
		}
	}
	return audit.CheckpointData{}, fmt.Errorf("checkpoint %s version %s not found", o.Name, o.VersionID)
}

// Execer runs one SQL statement with $1-style arguments on a store's
// database, bypassing the store.
type Execer interface {
	Exec(query string, args ...any) error
}

// Rewrite changes record seq's outcome (and reason) in the store's
// database and recomputes prev_hash and hash of it and every record after
// it, so the chain verifies again. The store's audit guards must be
// dropped first. It returns the rewritten record.
func Rewrite(t testing.TB, s broker.Store, db Execer, seq int64, outcome, reason string) broker.AuditRecord {
	t.Helper()
	var recs []broker.AuditRecord
	err := s.View(context.Background(), func(tx broker.Tx) error {
		var err error
		recs, err = tx.ListAudit(broker.AuditFilter{AfterSeq: seq - 1})
		return err
	})
	if err != nil || len(recs) == 0 || recs[0].Seq != seq {
		t.Fatalf("read records from %d: %v (%d records)", seq, err, len(recs))
	}
	var rewritten broker.AuditRecord
	prev := recs[0].PrevHash
	for i, r := range recs {
		if i == 0 {
			r.Outcome, r.Reason = outcome, reason
		}
		r.PrevHash = prev
		r.Hash = r.ComputeHash()
		prev = r.Hash
		if err := db.Exec("UPDATE audit SET outcome = $1, reason = $2, prev_hash = $3, hash = $4 WHERE seq = $5",
			r.Outcome, r.Reason, r.PrevHash, r.Hash, r.Seq); err != nil {
			t.Fatalf("rewrite record %d: %v", r.Seq, err)
		}
		if i == 0 {
			rewritten = r
		}
	}
	return rewritten
}

package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/keyfile"
)

// RestoreOptions configure Restore.
type RestoreOptions struct {
	// Store is the target store, freshly opened (migrated) and empty.
	// Required.
	Store broker.Store
	// Keys says where each key file goes, by name. A key in the backup
	// with no entry here is not written (and listed in Result.KeysSkipped).
	Keys []KeyFile
	// Force moves key files that exist with other contents aside
	// (<path>.replaced-<time>) instead of refusing.
	Force bool
	// Now is the clock for the names of moved-aside files. Default: time.Now.
	Now func() time.Time
}

// Result is what a restore did.
type Result struct {
	Manifest Manifest `json:"manifest"`
	// Rows is how many rows each table received.
	Rows map[string]int64 `json:"rows"`
	// Head is the restored chain's head, checked equal to the manifest's.
	Head        Head     `json:"audit_head"`
	KeysWritten []string `json:"keys_written"`
	// KeysKept are key files that already held the same bytes.
	KeysKept    []string `json:"keys_kept,omitempty"`
	KeysSkipped []string `json:"keys_skipped,omitempty"`
	// MovedAside are the paths files in the way were moved to (Force).
	MovedAside []string `json:"moved_aside,omitempty"`
}

// importer is what the SQL stores' transactions offer beyond broker.Tx
// for a restore: inserting an audit record exactly as it was.
type importer interface {
	exporter
	ImportAudit(broker.AuditRecord) error
}

// Restore loads a checked backup into an empty store and writes its key
// files. It refuses a store that holds anything (ErrNotEmpty) and a key
// file that exists with other contents (unless Force), before writing
// anything. The rows are imported in one transaction, re-checked against
// the manifest as they are read, so a backup altered after Check leaves
// the store as it was. Afterwards the restored chain is verified and must
// end at the manifest's head.
func Restore(ctx context.Context, c *Checked, o RestoreOptions) (*Result, error) {
	if o.Store == nil {
		return nil, errors.New("restore: a target store is required")
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	if err := checkEmpty(ctx, o.Store); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	res := &Result{Manifest: c.Manifest, Rows: map[string]int64{}}
	plan, err := planKeys(c.Keys, o.Keys, o.Force, res)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	err = o.Store.Update(ctx, func(tx broker.Tx) error {
		im, ok := tx.(importer)
		if !ok {
			return errors.New("the store does not support restores")
		}
		for _, table := range Tables {
			var n int64
			err := c.readTable(table, func(line []byte, last bool) error {
				if last {
					return nil
				}
				row, err := decodeRow(table, line)
				if err != nil {
					return err
				}
				n++
				return importRow(tx, im, row)
			})
			if err != nil {
				return fmt.Errorf("import %s: %w", table, err)
			}
			res.Rows[table] = n
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	stamp := now().UTC().Format("20060102T150405Z")
	for _, k := range plan {
		if k.moveAside {
			aside := k.path + ".replaced-" + stamp
			if err := os.Rename(k.path, aside); err != nil {
				return res, fmt.Errorf("restore: key %s: %w", k.name, err)
			}
			res.MovedAside = append(res.MovedAside, aside)
		}
		if err := keyfile.Create(k.path, c.Keys[k.name]); err != nil {
			return res, fmt.Errorf("restore: key %s: %w", k.name, err)
		}
		res.KeysWritten = append(res.KeysWritten, k.name)
	}
	rep, err := audit.Verify(ctx, o.Store)
	if err != nil {
		return res, fmt.Errorf("restore: verify the restored chain: %w", err)
	}
	res.Head = Head{Seq: int64(rep.Records), Hash: rep.Head}
	if !rep.OK {
		return res, fmt.Errorf("restore: the restored audit chain does not verify: %s", rep.Problem)
	}
	if res.Head != c.Manifest.Head {
		return res, fmt.Errorf("restore: the restored audit chain ends at record %d, the backup's head is record %d",
			res.Head.Seq, c.Manifest.Head.Seq)
	}
	return res, nil
}

func importRow(tx broker.Tx, im importer, row any) error {
	switch r := row.(type) {
	case broker.Request:
		return tx.PutRequest(r)
	case broker.Grant:
		return tx.PutGrant(r)
	case broker.Token:
		return tx.PutToken(r)
	case broker.Session:
		return tx.PutSession(r)
	case broker.AuditRecord:
		return im.ImportAudit(r)
	case stateRow:
		return tx.PutState(r.Key, r.Value)
	}
	return fmt.Errorf("unexpected row %T", row)
}

// checkEmpty refuses a store that holds any row.
func checkEmpty(ctx context.Context, st broker.Store) error {
	return st.View(ctx, func(tx broker.Tx) error {
		ex, ok := tx.(exporter)
		if !ok {
			return errors.New("the store does not support restores")
		}
		var what []string
		if r, err := tx.ListAudit(broker.AuditFilter{Limit: 1}); err != nil {
			return err
		} else if len(r) > 0 {
			what = append(what, "audit records")
		}
		if r, err := tx.ListRequests(broker.RequestFilter{Limit: 1}); err != nil {
			return err
		} else if len(r) > 0 {
			what = append(what, "requests")
		}
		if r, err := tx.ListGrants(broker.GrantFilter{Limit: 1}); err != nil {
			return err
		} else if len(r) > 0 {
			what = append(what, "grants")
		}
		if r, err := tx.ListSessions(broker.SessionFilter{Limit: 1}); err != nil {
			return err
		} else if len(r) > 0 {
			what = append(what, "sessions")
		}
		if r, err := tx.ListTokenUsers(); err != nil {
			return err
		} else if len(r) > 0 {
			what = append(what, "tokens")
		}
		if r, err := ex.ListStateKeys(); err != nil {
			return err
		} else if len(r) > 0 {
			what = append(what, "state")
		}
		if len(what) > 0 {
			return fmt.Errorf("%w: it holds %v", ErrNotEmpty, what)
		}
		return nil
	})
}

// keyPlan is one key file to write.
type keyPlan struct {
	name, path string
	moveAside  bool
}

// planKeys decides, before anything is written, which key files to write
// and refuses those that exist with other contents unless force.
func planKeys(keys map[string][]byte, dest []KeyFile, force bool, res *Result) ([]keyPlan, error) {
	var plan []keyPlan
	for name, data := range keys {
		i := slices.IndexFunc(dest, func(k KeyFile) bool { return k.Name == name })
		if i < 0 {
			res.KeysSkipped = append(res.KeysSkipped, name)
			continue
		}
		p := keyPlan{name: name, path: dest[i].Path}
		cur, err := os.ReadFile(p.path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("key %s: %w", name, err)
		case bytes.Equal(cur, data):
			res.KeysKept = append(res.KeysKept, name)
			continue
		case !force:
			return nil, fmt.Errorf("key %s: %s exists with another key; restore into a fresh data directory, or use --force to move it aside", name, p.path)
		default:
			p.moveAside = true
		}
		plan = append(plan, p)
	}
	slices.SortFunc(plan, func(a, b keyPlan) int { return strings.Compare(a.name, b.name) })
	slices.Sort(res.KeysSkipped)
	slices.Sort(res.KeysKept)
	return plan, nil
}

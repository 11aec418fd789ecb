package storetest

import (
	"strings"
	"testing"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// RawDB reaches the store's database directly, the way someone with
// database access could, bypassing the store.
type RawDB interface {
	// Exec runs one SQL statement with $1-style arguments.
	Exec(query string, args ...any) error
	// DropAuditGuards removes the triggers that refuse UPDATE and DELETE
	// on the audit table.
	DropAuditGuards() error
}

// RunTamper edits and removes audit rows behind the store's back and checks
// that audit.Verify names the first broken record. open returns a new,
// empty store and a raw handle on its database.
func RunTamper(t *testing.T, open func(t *testing.T) (broker.Store, RawDB)) {
	// seed appends five records with outcome "denied" and returns them.
	seed := func(t *testing.T) (broker.Store, RawDB, []broker.AuditRecord) {
		s, db := open(t)
		var recs []broker.AuditRecord
		update(t, s, func(tx broker.Tx) error {
			for _, a := range []string{"request.create", "request.approve", "grant.create", "session.start", "session.end"} {
				r, err := tx.AppendAudit(broker.AuditRecord{Actor: "alice", Action: a, Target: "db1",
					Outcome: broker.OutcomeDenied, Details: []byte(`{"k":"v"}`)})
				if err != nil {
					return err
				}
				recs = append(recs, r)
			}
			return nil
		})
		return s, db, recs
	}
	verify := func(t *testing.T, s broker.Store) audit.Report {
		t.Helper()
		rep, err := audit.Verify(t.Context(), s)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		return rep
	}
	exec := func(t *testing.T, db RawDB, q string, args ...any) {
		t.Helper()
		if err := db.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	expectBroken := func(t *testing.T, rep audit.Report, seq int64, problem string) {
		t.Helper()
		if rep.OK || rep.FirstBad != seq || !strings.Contains(rep.Problem, problem) {
			t.Errorf("Verify = %+v; want first bad record %d with %q", rep, seq, problem)
		}
		if rep.Records != int(seq-1) {
			t.Errorf("Verify checked %d good records, want %d", rep.Records, seq-1)
		}
	}

	t.Run("Intact", func(t *testing.T) {
		s, _, recs := seed(t)
		rep := verify(t, s)
		if !rep.OK || rep.Records != 5 || rep.Head != recs[4].Hash || rep.FirstBad != 0 {
			t.Errorf("Verify = %+v, want 5 intact records with head %s", rep, recs[4].Hash)
		}
	})
	t.Run("GuardsRefuseEdits", func(t *testing.T) {
		s, db, _ := seed(t)
		if err := db.Exec("UPDATE audit SET outcome = 'success' WHERE seq = 3"); err == nil {
			t.Error("UPDATE on audit succeeded with the guards in place")
		}
		if err := db.Exec("DELETE FROM audit WHERE seq = 3"); err == nil {
			t.Error("DELETE on audit succeeded with the guards in place")
		}
		if rep := verify(t, s); !rep.OK {
			t.Errorf("Verify = %+v after refused edits", rep)
		}
	})
	t.Run("AlteredOutcome", func(t *testing.T) {
		s, db, _ := seed(t)
		if err := db.DropAuditGuards(); err != nil {
			t.Fatal(err)
		}
		exec(t, db, "UPDATE audit SET outcome = 'success' WHERE seq = 3")
		expectBroken(t, verify(t, s), 3, "hash mismatch (record altered)")
	})
	t.Run("AlteredDetailsAndTime", func(t *testing.T) {
		for col, val := range map[string]string{
			"details": `{"k":"w"}`, "time": "2001-01-01T00:00:00.000000000Z", "actor": "mallory",
			"target": "", "trace_id": "trc_x", "id": "aud_forged",
		} {
			t.Run(col, func(t *testing.T) {
				s, db, _ := seed(t)
				if err := db.DropAuditGuards(); err != nil {
					t.Fatal(err)
				}
				exec(t, db, "UPDATE audit SET "+col+" = $1 WHERE seq = 2", val)
				expectBroken(t, verify(t, s), 2, "hash mismatch")
			})
		}
	})
	// An editor who knows the hash function re-hashes the altered record:
	// the record is self-consistent, and only the next link shows it.
	t.Run("RehashedRecord", func(t *testing.T) {
		s, db, recs := seed(t)
		if err := db.DropAuditGuards(); err != nil {
			t.Fatal(err)
		}
		r := recs[2]
		r.Outcome = broker.OutcomeSuccess
		exec(t, db, "UPDATE audit SET outcome = $1, hash = $2 WHERE seq = 3", r.Outcome, r.ComputeHash())
		expectBroken(t, verify(t, s), 4, "prev_hash does not match record 3")
	})
	// Record 3 is re-linked to record 1, as if record 2 were spliced out,
	// and re-hashed. Every record's own hash is valid, so only the
	// prev_hash check catches it.
	t.Run("RelinkedRecord", func(t *testing.T) {
		s, db, recs := seed(t)
		if err := db.DropAuditGuards(); err != nil {
			t.Fatal(err)
		}
		r := recs[2]
		r.PrevHash = recs[0].Hash
		exec(t, db, "UPDATE audit SET prev_hash = $1, hash = $2 WHERE seq = 3", r.PrevHash, r.ComputeHash())
		exec(t, db, "UPDATE audit SET prev_hash = $1 WHERE seq = 4", r.ComputeHash())
		rep := verify(t, s)
		if rep.OK || rep.FirstBad != 3 {
			t.Fatalf("Verify = %+v, want OK=false, FirstBad=3", rep)
		}
		expectBroken(t, rep, 3, "prev_hash does not match record 2")
	})
	t.Run("DeletedRow", func(t *testing.T) {
		s, db, _ := seed(t)
		if err := db.DropAuditGuards(); err != nil {
			t.Fatal(err)
		}
		exec(t, db, "DELETE FROM audit WHERE seq = 3")
		expectBroken(t, verify(t, s), 3, "gap: seq 3 missing")
	})
	t.Run("DeletedFirstRow", func(t *testing.T) {
		s, db, _ := seed(t)
		if err := db.DropAuditGuards(); err != nil {
			t.Fatal(err)
		}
		exec(t, db, "DELETE FROM audit WHERE seq = 1")
		expectBroken(t, verify(t, s), 1, "gap: seq 1 missing")
	})
	// Cutting records off the end leaves a valid, shorter chain; the head
	// hash remembered from before is what shows it.
	t.Run("TruncatedTail", func(t *testing.T) {
		s, db, recs := seed(t)
		if err := db.DropAuditGuards(); err != nil {
			t.Fatal(err)
		}
		exec(t, db, "DELETE FROM audit WHERE seq = 5")
		rep := verify(t, s)
		if !rep.OK || rep.Records != 4 || rep.Head == recs[4].Hash || rep.Head != recs[3].Hash {
			t.Errorf("Verify = %+v; want a valid 4-record chain whose head differs from the old head", rep)
		}
	})
}

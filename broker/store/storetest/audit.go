package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

func testAuditAppend(t *testing.T, s broker.Store) {
	var got []broker.AuditRecord
	update(t, s, func(tx broker.Tx) error {
		for _, r := range []broker.AuditRecord{
			{Actor: "alice", Action: "request.create", Target: "db1", Outcome: "success", Reason: "INC-1",
				TraceID: "trc_1", Details: json.RawMessage("{\n  \"role\": \"ro\",\n  \"n\": [1, 2]\n}")},
			{ID: "aud_given", Time: base, Actor: "bob", Action: "request.approve", Outcome: "success"},
			{Actor: "system", Action: "grant.create", Outcome: "success", Details: json.RawMessage("null")},
		} {
			rec, err := tx.AppendAudit(r)
			if err != nil {
				return err
			}
			got = append(got, rec)
		}
		return nil
	})
	prev := audit.GenesisHash
	for i, r := range got {
		if r.Seq != int64(i+1) || r.PrevHash != prev || r.Hash != r.ComputeHash() || r.ID == "" || r.Time.IsZero() {
			t.Errorf("record %d not chained: %+v", i, r)
		}
		prev = r.Hash
	}
	if got[0].Time.Location() != time.UTC || time.Since(got[0].Time) > time.Minute {
		t.Errorf("filled-in time = %v, want now in UTC", got[0].Time)
	}
	if string(got[0].Details) != `{"role":"ro","n":[1,2]}` {
		t.Errorf("details stored as %s, want compacted", got[0].Details)
	}
	if got[1].ID != "aud_given" || !got[1].Time.Equal(base) {
		t.Errorf("given ID and time not kept: %+v", got[1])
	}
	if got[2].Details != nil {
		t.Errorf("null details = %s, want none", got[2].Details)
	}
	view(t, s, func(tx broker.Tx) error {
		list, err := tx.ListAudit(broker.AuditFilter{})
		if err != nil {
			t.Fatal(err)
		}
		mustEqual(t, "ListAudit", list, got)
		return nil
	})

	// Invalid details are refused and leave the chain alone.
	err := s.Update(t.Context(), func(tx broker.Tx) error {
		_, err := tx.AppendAudit(broker.AuditRecord{Actor: "a", Action: "b", Outcome: "c", Details: json.RawMessage("{oops")})
		return err
	})
	if err == nil {
		t.Error("append with invalid details succeeded")
	}
	for name, r := range map[string]broker.AuditRecord{
		"invalid UTF-8 actor":   {Actor: "a\xff", Action: "b", Outcome: "c"},
		"invalid UTF-8 details": {Actor: "a", Action: "b", Outcome: "c", Details: json.RawMessage("{\"k\":\"\xff\"}")},
	} {
		err := s.Update(t.Context(), func(tx broker.Tx) error { _, err := tx.AppendAudit(r); return err })
		if err == nil {
			t.Errorf("append with %s succeeded", name)
		}
	}
	rep, err := audit.Verify(t.Context(), s)
	if err != nil || !rep.OK || rep.Records != 3 || rep.Head != got[2].Hash {
		t.Errorf("Verify = %+v, %v; want 3 intact records, head %s", rep, err, got[2].Hash)
	}
}

func testAuditFilters(t *testing.T, s broker.Store) {
	recs := []broker.AuditRecord{
		{Actor: "alice", Action: "request.create", Target: "db1"},
		{Actor: "bob", Action: "request.approve", Target: "db1"},
		{Actor: "system", Action: "grant.create", Target: "db1"},
		{Actor: "alice", Action: "grant.revoke", Target: "host1"},
		{Actor: "alice", Action: "grantx.other", Target: "host1"},
		{Actor: "bob", Action: "GRANT.upper", Target: "host1"},
	}
	update(t, s, func(tx broker.Tx) error {
		for i, r := range recs {
			r.Time, r.Outcome, r.ID = base.Add(time.Duration(i)*time.Second), "success", fmt.Sprintf("aud_%d", i+1)
			if _, err := tx.AppendAudit(r); err != nil {
				return err
			}
		}
		return nil
	})
	cases := []struct {
		name string
		f    broker.AuditFilter
		want []int64
	}{
		{"all", broker.AuditFilter{}, []int64{1, 2, 3, 4, 5, 6}},
		{"after seq", broker.AuditFilter{AfterSeq: 4}, []int64{5, 6}},
		{"actor", broker.AuditFilter{Actor: "alice"}, []int64{1, 4, 5}},
		{"target", broker.AuditFilter{Target: "host1"}, []int64{4, 5, 6}},
		{"action prefix is exact and case-sensitive", broker.AuditFilter{ActionPrefix: "grant."}, []int64{3, 4}},
		{"since is inclusive, until exclusive", broker.AuditFilter{Since: base.Add(time.Second), Until: base.Add(3 * time.Second)}, []int64{2, 3}},
		{"limit", broker.AuditFilter{Limit: 2}, []int64{1, 2}},
		{"page", broker.AuditFilter{AfterSeq: 2, Limit: 2}, []int64{3, 4}},
		{"combined", broker.AuditFilter{Actor: "alice", Target: "host1", ActionPrefix: "grant"}, []int64{4, 5}},
		{"no match", broker.AuditFilter{Actor: "mallory"}, nil},
	}
	view(t, s, func(tx broker.Tx) error {
		for _, c := range cases {
			got, err := tx.ListAudit(c.f)
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
				continue
			}
			var seqs []int64
			for _, r := range got {
				seqs = append(seqs, r.Seq)
			}
			if !slices.Equal(seqs, c.want) {
				t.Errorf("ListAudit %s = %v, want %v", c.name, seqs, c.want)
			}
		}
		return nil
	})
}

// testAuditConcurrent appends from many goroutines at once; the store must
// serialize them into one unbroken chain.
func testAuditConcurrent(t *testing.T, s broker.Store) {
	const workers, each = 20, 25
	AppendConcurrently(t, []broker.Store{s}, workers, each)
	rep, err := audit.Verify(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.Records != workers*each {
		t.Fatalf("after %d concurrent appends: %+v", workers*each, rep)
	}
}

// AppendConcurrently runs workers goroutines, spread over the given
// stores, each appending n records in transactions of their own. It is
// exported for driver tests that open several stores on one database.
func AppendConcurrently(t *testing.T, stores []broker.Store, workers, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		s := stores[w%len(stores)]
		wg.Go(func() {
			for i := range n {
				err := s.Update(t.Context(), func(tx broker.Tx) error {
					_, err := tx.AppendAudit(broker.AuditRecord{
						Actor: fmt.Sprintf("worker%d", w), Action: "test.append", Outcome: "success",
						Details: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)),
					})
					return err
				})
				if err != nil {
					errs <- fmt.Errorf("worker %d append %d: %w", w, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
}

// testReadModifyWrite has many goroutines increment one counter with a
// read and a write in each Update; serialized Updates lose no increment.
// This is what keeps two approvals arriving at once from overwriting each
// other.
func testReadModifyWrite(t *testing.T, s broker.Store) {
	IncrementConcurrently(t, []broker.Store{s}, 10, 10)
}

// IncrementConcurrently runs workers goroutines, spread over the given
// stores, each incrementing a counter in state n times, then checks that
// no increment was lost.
func IncrementConcurrently(t *testing.T, stores []broker.Store, workers, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		s := stores[w%len(stores)]
		wg.Go(func() {
			for range n {
				err := s.Update(t.Context(), func(tx broker.Tx) error {
					v := 0
					b, err := tx.GetState("counter")
					if err == nil {
						err = json.Unmarshal(b, &v)
					} else if errors.Is(err, broker.ErrNotFound) {
						err = nil
					}
					if err != nil {
						return err
					}
					return tx.PutState("counter", []byte(strconv.Itoa(v+1)))
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	view(t, stores[0], func(tx broker.Tx) error {
		b, err := tx.GetState("counter")
		if err != nil {
			return err
		}
		if string(b) != strconv.Itoa(workers*n) {
			t.Errorf("counter = %s after %d increments; Updates were not serialized", b, workers*n)
		}
		return nil
	})
}

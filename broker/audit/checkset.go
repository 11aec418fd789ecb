package audit

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/custos-pam/custos/broker"
)

// CheckpointReport is what the checkpoints showed.
type CheckpointReport struct {
	// Found is the number of checkpoint objects (versions) in the store,
	// delete markers included.
	Found int `json:"found"`
	// Verified is how many carry a valid signature by a trusted key. Only
	// those are compared with the chain.
	Verified int `json:"verified"`
	// Newest is the verified checkpoint with the highest seq.
	Newest *CheckpointRef `json:"newest,omitempty"`
	// Problems are checkpoints that failed a check, and records left
	// uncovered for too long.
	Problems []CheckpointProblem `json:"problems,omitempty"`
}

// CheckpointRef names a checkpoint.
type CheckpointRef struct {
	Name    string    `json:"name"`
	Seq     int64     `json:"seq"`
	Hash    string    `json:"hash"`
	Time    time.Time `json:"time"`
	Replica string    `json:"replica"`
}

// CheckpointProblem is one failed checkpoint check. Name is the object
// name, empty for a problem of coverage.
type CheckpointProblem struct {
	Name    string `json:"name,omitempty"`
	Problem string `json:"problem"`
}

func (p CheckpointProblem) String() string {
	if p.Name == "" {
		return p.Problem
	}
	return "checkpoint " + p.Name + ": " + p.Problem
}

// loadedCheckpoint is a verified checkpoint and its label.
type loadedCheckpoint struct {
	name string
	cp   Checkpoint
}

// checkpointSet compares records, in seq order, with the verified
// checkpoints that list them.
type checkpointSet struct {
	rep    CheckpointReport
	list   []*loadedCheckpoint // sorted by FromSeq
	next   int
	active []*loadedCheckpoint // those listing the next record
	newest *loadedCheckpoint
	// lastAgreed is the newest record a checkpoint listed and agreed on.
	lastAgreed int64
	// uncovered is the first record after the newest checkpoint's head.
	uncoveredSeq  int64
	uncoveredTime time.Time
}

// readParallel is how many checkpoint objects are read at once.
const readParallel = 8

// loadCheckpoints lists and reads every checkpoint and keeps those whose
// signature verifies; the others become problems.
func loadCheckpoints(ctx context.Context, st CheckpointStore, trusted []ed25519.PublicKey) (*checkpointSet, error) {
	objs, err := st.ListCheckpoints(ctx)
	if err != nil {
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	s := &checkpointSet{}
	s.rep.Found = len(objs)
	versions := map[string]int{}
	for _, o := range objs {
		if !o.Deleted {
			versions[o.Name]++
		}
	}
	type result struct {
		data CheckpointData
		err  error
	}
	res := make([]result, len(objs))
	sem := make(chan struct{}, readParallel)
	var wg sync.WaitGroup
	for i, o := range objs {
		if o.Deleted {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			res[i].data, res[i].err = st.ReadCheckpoint(ctx, o)
		}()
	}
	wg.Wait()
	for i, o := range objs {
		label := o.Name
		if versions[o.Name] > 1 {
			label += " (version " + o.VersionID + ")"
		}
		problem := func(format string, args ...any) {
			s.rep.Problems = append(s.rep.Problems, CheckpointProblem{Name: label, Problem: fmt.Sprintf(format, args...)})
		}
		if o.Deleted {
			problem("deleted: a delete marker (version %s) hides it; versions under Object Lock below it are still read", o.VersionID)
			continue
		}
		if versions[o.Name] > 1 {
			problem("the object has %d versions: checkpoints are written once, so all but one were written by someone else", versions[o.Name])
		}
		if err := res[i].err; err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			problem("unreadable: %v", err)
			continue
		}
		d := res[i].data
		cp, _, err := ParseCheckpoint(d.Body, trusted...)
		if err != nil {
			problem("%v", err)
			continue
		}
		if d.ObjectLock && d.RetentionMode != "COMPLIANCE" {
			problem("not under COMPLIANCE retention (mode %q): it can be deleted", d.RetentionMode)
		}
		if CheckpointName(cp) != o.Name {
			problem("its name does not match its contents (a checkpoint of seq %d by %s): copied from %s",
				cp.Seq, cp.Replica, CheckpointName(cp))
		}
		s.rep.Verified++
		l := &loadedCheckpoint{name: label, cp: cp}
		s.list = append(s.list, l)
		if s.newest == nil || cp.Seq > s.newest.cp.Seq || cp.Seq == s.newest.cp.Seq && cp.Time.After(s.newest.cp.Time) {
			s.newest = l
		}
	}
	sort.SliceStable(s.list, func(i, j int) bool { return s.list[i].cp.FromSeq < s.list[j].cp.FromSeq })
	return s, nil
}

// compare checks record r, the next in seq order, against every
// checkpoint that lists it, and returns the disagreement or "".
func (s *checkpointSet) compare(r broker.AuditRecord) string {
	for s.next < len(s.list) && s.list[s.next].cp.FromSeq < r.Seq {
		s.active = append(s.active, s.list[s.next])
		s.next++
	}
	keep := s.active[:0]
	for _, l := range s.active {
		if l.cp.Seq >= r.Seq {
			keep = append(keep, l)
		}
	}
	clear(s.active[len(keep):])
	s.active = keep
	listed := false
	for _, l := range s.active {
		want := l.cp.Digests[r.Seq-l.cp.FromSeq-1]
		if r.Seq == l.cp.Seq {
			want = l.cp.Hash
		}
		if !strings.HasPrefix(r.Hash, want) {
			return s.disagreement(r, l, want)
		}
		listed = true
	}
	if listed {
		s.lastAgreed = r.Seq
	}
	if s.uncoveredSeq == 0 && (s.newest == nil || r.Seq > s.newest.cp.Seq) {
		s.uncoveredSeq, s.uncoveredTime = r.Seq, r.Time
	}
	return ""
}

func (s *checkpointSet) disagreement(r broker.AuditRecord, l *loadedCheckpoint, want string) string {
	msg := fmt.Sprintf("record %d (id %s): hash %s differs from checkpoint %s (seq %d, taken %s by %s), which recorded %s: ",
		r.Seq, r.ID, r.Hash[:min(len(r.Hash), DigestLen)], l.name, l.cp.Seq, l.cp.Time.UTC().Format(time.RFC3339), l.cp.Replica,
		want[:DigestLen])
	if s.lastAgreed == r.Seq-1 {
		return msg + "the record was altered and the hashes after it recomputed"
	}
	return msg + fmt.Sprintf("the record, or one of records %d to %d before it that no checkpoint lists, was altered and the hashes after it recomputed",
		s.lastAgreed+1, r.Seq-1)
}

// beyond reports records a checkpoint saw that the store no longer has,
// given the store's last seq.
func (s *checkpointSet) beyond(head int64) string {
	if s.newest == nil || s.newest.cp.Seq <= head {
		return ""
	}
	cp := s.newest.cp
	return fmt.Sprintf("records %d to %d missing: checkpoint %s (taken %s by %s) recorded the chain up to record %d, hash %s, but the store ends at record %d (records cut off the end, or the store restored from an older backup)",
		head+1, cp.Seq, s.newest.name, cp.Time.UTC().Format(time.RFC3339), cp.Replica, cp.Seq, cp.Hash[:DigestLen], head)
}

// checkAge reports records older than maxAge that no checkpoint covers.
func (s *checkpointSet) checkAge(now time.Time, maxAge time.Duration) {
	if s.uncoveredSeq == 0 || now.Sub(s.uncoveredTime) <= maxAge {
		return
	}
	newest := "there is no valid checkpoint"
	if s.newest != nil {
		newest = fmt.Sprintf("the newest valid checkpoint, %s, covers up to record %d and was taken %s",
			s.newest.name, s.newest.cp.Seq, s.newest.cp.Time.UTC().Format(time.RFC3339))
	}
	s.rep.Problems = append(s.rep.Problems, CheckpointProblem{Problem: fmt.Sprintf(
		"records from %d on (the first appended %s) are covered by no checkpoint although they are older than %s; %s: newer checkpoints were deleted, or the broker cannot write them (its log says \"audit checkpoint not written\")",
		s.uncoveredSeq, s.uncoveredTime.UTC().Format(time.RFC3339), maxAge, newest)})
}

func (s *checkpointSet) report() *CheckpointReport {
	rep := s.rep
	if s.newest != nil {
		cp := s.newest.cp
		rep.Newest = &CheckpointRef{Name: s.newest.name, Seq: cp.Seq, Hash: cp.Hash, Time: cp.Time, Replica: cp.Replica}
	}
	return &rep
}

package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/audit/audittest"
	"github.com/custos-pam/custos/broker/store/sqlite"
)

// keySigner is an Ed25519 key, as the recorder's manifest signer holds.
type keySigner struct{ k ed25519.PrivateKey }

func (s keySigner) Public() ed25519.PublicKey { return s.k.Public().(ed25519.PublicKey) }
func (s keySigner) Sign(m []byte) []byte      { return ed25519.Sign(s.k, m) }

func newSigner(t *testing.T) keySigner {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return keySigner{k}
}

// tamperEnv is a real SQLite store with a raw handle on its database, an
// in-memory bucket and the broker's key.
type tamperEnv struct {
	t      *testing.T
	st     *sqlite.Store
	db     *sql.DB
	log    *audit.Log
	bucket *audittest.Checkpoints
	key    keySigner
}

func newTamperEnv(t *testing.T) *tamperEnv {
	t.Helper()
	path := filepath.Join(t.TempDir(), "custos.db")
	st, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &tamperEnv{t: t, st: st, db: db, log: audit.NewLog(st), bucket: &audittest.Checkpoints{Locked: true}, key: newSigner(t)}
}

func (e *tamperEnv) Exec(q string, args ...any) error {
	_, err := e.db.Exec(q, args...)
	return err
}

func (e *tamperEnv) dropGuards() {
	e.t.Helper()
	if err := e.Exec("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete"); err != nil {
		e.t.Fatal(err)
	}
}

func (e *tamperEnv) append(n int) {
	e.t.Helper()
	for i := range n {
		if _, err := e.log.Append(e.t.Context(), audit.Entry{Actor: "alice", Action: "grant.create", Target: "prod-db",
			Outcome: broker.OutcomeDenied, Reason: fmt.Sprint("try ", i)}); err != nil {
			e.t.Fatal(err)
		}
	}
}

func (e *tamperEnv) checkpointer(mods ...func(*audit.CheckpointerOptions)) *audit.Checkpointer {
	e.t.Helper()
	o := audit.CheckpointerOptions{Store: e.st, Checkpoints: e.bucket, Signer: e.key,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, m := range mods {
		m(&o)
	}
	c, err := audit.NewCheckpointer(o)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *tamperEnv) checkpoint(c *audit.Checkpointer) []string {
	e.t.Helper()
	names, err := c.Checkpoint(e.t.Context(), audit.ReasonInterval)
	if err != nil {
		e.t.Fatal(err)
	}
	return names
}

func (e *tamperEnv) verify(mods ...func(*audit.Verifier)) audit.Report {
	e.t.Helper()
	v := &audit.Verifier{Store: e.st, Checkpoints: e.bucket, Trusted: []ed25519.PublicKey{e.key.Public()}}
	for _, m := range mods {
		m(v)
	}
	rep, err := v.Verify(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	return rep
}

func TestCheckpointSignature(t *testing.T) {
	key, other := newSigner(t), newSigner(t)
	cp := audit.Checkpoint{Format: audit.CheckpointFormat, Version: audit.CheckpointVersion, Seq: 3,
		Hash: strings.Repeat("ab", 32), Time: time.Now().UTC(), Replica: "b1", FromSeq: 1,
		Digests: []string{strings.Repeat("c", 16), strings.Repeat("ab", 8)}}
	b, err := audit.SignCheckpoint(cp, key)
	if err != nil {
		t.Fatal(err)
	}
	got, kid, err := audit.ParseCheckpoint(b, other.Public(), key.Public())
	if err != nil || got.Seq != 3 || got.Hash != cp.Hash || kid != audit.KeyID(key.Public()) {
		t.Fatalf("ParseCheckpoint = %+v, %s, %v", got, kid, err)
	}
	if _, _, err := audit.ParseCheckpoint(b, other.Public()); !errors.Is(err, audit.ErrCheckpointSignature) {
		t.Errorf("untrusted key: %v", err)
	}
	forged := bytes.Replace(b, []byte(`"seq":3`), []byte(`"seq":4`), 1)
	if _, _, err := audit.ParseCheckpoint(forged, key.Public()); !errors.Is(err, audit.ErrCheckpointSignature) {
		t.Errorf("altered checkpoint: %v", err)
	}
	// A signature of one kind of record never verifies as another: the
	// same bytes signed without the checkpoint context line.
	raw := b[len(`{"checkpoint":`):bytes.Index(b, []byte(`,"signature":`))]
	bare := ed25519.Sign(key.k, raw)
	swapped := bytes.Replace(b, []byte(b64(key.Sign(append([]byte("custos audit checkpoint v1\n"), raw...)))), []byte(b64(bare)), 1)
	if bytes.Equal(swapped, b) {
		t.Fatal("signature not found in the file")
	}
	if _, _, err := audit.ParseCheckpoint(swapped, key.Public()); !errors.Is(err, audit.ErrCheckpointSignature) {
		t.Errorf("signature without context: %v", err)
	}
}

func TestCheckpointerWritesWhenTheChainGrew(t *testing.T) {
	e := newTamperEnv(t)
	c := e.checkpointer(func(o *audit.CheckpointerOptions) { o.Replica = "b1" })
	if names := e.checkpoint(c); len(names) != 0 {
		t.Fatalf("empty log checkpointed: %v", names)
	}
	e.append(3)
	names := e.checkpoint(c)
	if len(names) != 1 || !strings.HasPrefix(names[0], "00000000000000000003-") || !strings.HasSuffix(names[0], "-b1.json") {
		t.Fatalf("names = %v", names)
	}
	if again := e.checkpoint(c); len(again) != 0 {
		t.Fatalf("unchanged chain checkpointed again: %v", again)
	}
	e.append(2)
	names = e.checkpoint(c)
	cp, _, err := audit.ParseCheckpoint(e.bucket.Body(names[0]), e.key.Public())
	if err != nil || cp.FromSeq != 3 || cp.Seq != 5 || len(cp.Digests) != 2 || cp.Replica != "b1" {
		t.Fatalf("second checkpoint = %+v, %v", cp, err)
	}
	if rep := e.verify(); !rep.OK || rep.Records != 5 || rep.Checkpoints.Verified != 2 || rep.Checkpoints.Newest.Seq != 5 {
		t.Fatalf("verify = %+v %+v", rep, rep.Checkpoints)
	}
}

// The attack checkpoints exist for: someone with write access to the
// database edits a record and recomputes every hash after it. The chain
// alone still verifies; the checkpoints name the record.
func TestVerifierNamesRewrittenRecord(t *testing.T) {
	for _, seq := range []int64{1, 3, 6, 10} {
		t.Run(fmt.Sprint("record", seq), func(t *testing.T) {
			e := newTamperEnv(t)
			c := e.checkpointer()
			e.append(5)
			e.checkpoint(c)
			e.append(5)
			e.checkpoint(c)
			e.dropGuards()
			r := audittest.Rewrite(t, e.st, e, seq, broker.OutcomeSuccess, "approved")
			if rep, err := audit.Verify(t.Context(), e.st); err != nil || !rep.OK {
				t.Fatalf("the rewritten chain should fool the chain check alone: %+v, %v", rep, err)
			}
			rep := e.verify()
			want := fmt.Sprintf("record %d (id %s): hash ", seq, r.ID)
			if rep.OK || rep.FirstBad != seq || !strings.HasPrefix(rep.Problem, want) ||
				!strings.Contains(rep.Problem, "the record was altered and the hashes after it recomputed") {
				t.Fatalf("verify = %+v; want record %d named", rep, seq)
			}
			if rep.Records != int(seq-1) || rep.Checkpoints.Verified != 2 || len(rep.Checkpoints.Problems) != 0 {
				t.Fatalf("verify = %+v %+v", rep, rep.Checkpoints)
			}
		})
	}
}

// A record older than a new process's first checkpoint is covered only by
// the head hash: the first listed record that disagrees is named, with the
// range the edit may lie in.
func TestVerifierBeforeFirstDigest(t *testing.T) {
	e := newTamperEnv(t)
	e.append(10)
	c := e.checkpointer(func(o *audit.CheckpointerOptions) { o.MaxRecords = 4 })
	names := e.checkpoint(c)
	cp, _, _ := audit.ParseCheckpoint(e.bucket.Body(names[0]), e.key.Public())
	if len(names) != 1 || cp.FromSeq != 6 || cp.Seq != 10 {
		t.Fatalf("first checkpoint of a new process: %v %+v", names, cp)
	}
	// Catching up writes checkpoints of at most MaxRecords each.
	e.append(9)
	if names := e.checkpoint(c); len(names) != 3 {
		t.Fatalf("catch-up wrote %v", names)
	}
	e.dropGuards()
	audittest.Rewrite(t, e.st, e, 2, broker.OutcomeSuccess, "")
	rep := e.verify()
	if rep.OK || rep.FirstBad != 7 || !strings.Contains(rep.Problem, "one of records 1 to 6 before it that no checkpoint lists") {
		t.Fatalf("verify = %+v", rep)
	}
}

func TestVerifierCheckpointProblems(t *testing.T) {
	setup := func(t *testing.T) (*tamperEnv, []string) {
		e := newTamperEnv(t)
		c := e.checkpointer()
		var names []string
		for range 3 {
			e.append(4)
			names = append(names, e.checkpoint(c)...)
		}
		return e, names
	}
	problems := func(rep audit.Report) string {
		var s []string
		for _, p := range rep.Checkpoints.Problems {
			s = append(s, p.String())
		}
		return strings.Join(s, "\n")
	}
	t.Run("BadSignature", func(t *testing.T) {
		e, names := setup(t)
		cp, _, _ := audit.ParseCheckpoint(e.bucket.Body(names[1]), e.key.Public())
		cp.Replica = "mallory"
		b, _ := audit.SignCheckpoint(cp, newSigner(t))
		if err := e.bucket.PutCheckpoint(t.Context(), audit.CheckpointName(cp), b); err != nil {
			t.Fatal(err)
		}
		rep := e.verify()
		if rep.OK || rep.FirstBad != 0 || rep.Checkpoints.Verified != 3 || rep.Checkpoints.Found != 4 ||
			!strings.Contains(problems(rep), "checkpoint "+audit.CheckpointName(cp)+": checkpoint signature invalid: no trusted key verifies it") {
			t.Fatalf("verify = %+v\n%s", rep, problems(rep))
		}
	})
	t.Run("OverwrittenVersion", func(t *testing.T) {
		e, names := setup(t)
		e.bucket.Overwrite(names[2], bytes.Replace(e.bucket.Body(names[2]), []byte(`"seq":12`), []byte(`"seq":13`), 1))
		rep := e.verify()
		if rep.OK || rep.Checkpoints.Verified != 3 || !strings.Contains(problems(rep), "has 2 versions") ||
			!strings.Contains(problems(rep), "checkpoint signature invalid") {
			t.Fatalf("verify = %+v\n%s", rep, problems(rep))
		}
	})
	t.Run("DeleteMarker", func(t *testing.T) {
		e, names := setup(t)
		e.bucket.Delete(names[2])
		rep := e.verify()
		if rep.OK || rep.Checkpoints.Verified != 3 || !strings.Contains(problems(rep), "deleted: a delete marker") {
			t.Fatalf("verify = %+v\n%s", rep, problems(rep))
		}
	})
	// On a directory store the newest checkpoints can be removed for
	// good; records older than the age limit left uncovered show it.
	t.Run("NewestRemoved", func(t *testing.T) {
		e, names := setup(t)
		e.bucket.Purge(names[2])
		later := func(v *audit.Verifier) {
			v.MaxAge = audit.CheckpointMaxAge(5 * time.Minute)
			v.Now = func() time.Time { return time.Now().Add(time.Hour) }
		}
		rep := e.verify(later)
		if rep.OK || rep.FirstBad != 0 || !strings.Contains(problems(rep), "records from 9 on") ||
			!strings.Contains(problems(rep), "covers up to record 8") {
			t.Fatalf("verify = %+v\n%s", rep, problems(rep))
		}
		// Fresh records are not an alarm yet.
		if rep := e.verify(func(v *audit.Verifier) { v.MaxAge = time.Hour }); !rep.OK {
			t.Fatalf("verify = %+v\n%s", rep, problems(rep))
		}
		// Nor is a log whose every record is covered.
		f, _ := setup(t)
		if rep := f.verify(later); !rep.OK {
			t.Fatalf("covered log: %+v\n%s", rep, problems(rep))
		}
	})
	t.Run("NoCheckpoints", func(t *testing.T) {
		e := newTamperEnv(t)
		e.append(2)
		rep := e.verify(func(v *audit.Verifier) {
			v.MaxAge = time.Minute
			v.Now = func() time.Time { return time.Now().Add(time.Hour) }
		})
		if rep.OK || !strings.Contains(problems(rep), "records from 1 on") || !strings.Contains(problems(rep), "there is no valid checkpoint") {
			t.Fatalf("verify = %+v\n%s", rep, problems(rep))
		}
	})
	// Records cut off the end leave a valid, shorter chain; a checkpoint
	// that saw them shows it.
	t.Run("TruncatedTail", func(t *testing.T) {
		e, _ := setup(t)
		e.dropGuards()
		if err := e.Exec("DELETE FROM audit WHERE seq > 10"); err != nil {
			t.Fatal(err)
		}
		if rep, _ := audit.Verify(t.Context(), e.st); !rep.OK {
			t.Fatalf("chain alone: %+v", rep)
		}
		rep := e.verify()
		if rep.OK || rep.FirstBad != 11 || !strings.HasPrefix(rep.Problem, "records 11 to 12 missing") || rep.Records != 10 {
			t.Fatalf("verify = %+v", rep)
		}
	})
}

// Two brokers on one store and one bucket: each writes under its own
// names, nothing is overwritten, and every checkpoint verifies.
func TestTwoReplicasShareABucket(t *testing.T) {
	e := newTamperEnv(t)
	a, b := e.checkpointer(), e.checkpointer()
	if a.Replica() == b.Replica() {
		t.Fatalf("two processes share replica name %s", a.Replica())
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	written := 0
	for _, c := range []*audit.Checkpointer{a, b} {
		wg.Go(func() {
			for range 10 {
				if _, err := e.log.Append(t.Context(), audit.Entry{Actor: "a", Action: "x", Outcome: "success"}); err != nil {
					t.Error(err)
					return
				}
				names, err := c.Checkpoint(t.Context(), audit.ReasonInterval)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				written += len(names)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	rep := e.verify()
	if !rep.OK || rep.Records != 20 || rep.Checkpoints.Verified != written || rep.Checkpoints.Found != written ||
		len(e.bucket.Names()) != written || rep.Checkpoints.Newest.Seq != 20 {
		t.Fatalf("verify = %+v %+v (written %d)", rep, rep.Checkpoints, written)
	}
}

// A sealed recording's audit record triggers a checkpoint at once, not at
// the next interval.
func TestCheckpointAfterSealedRecording(t *testing.T) {
	e := newTamperEnv(t)
	c := e.checkpointer(func(o *audit.CheckpointerOptions) { o.Interval = time.Hour })
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	rec := c.After(e.log, audit.ReasonSealed, "session.recorded")
	if _, err := rec.Append(t.Context(), audit.Entry{Actor: "broker", Action: "session.start", Outcome: "success"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the start checkpoint may see it or not
	before := len(e.bucket.Names())
	r, err := rec.Append(t.Context(), audit.Entry{Actor: "broker", Action: "session.recorded", Outcome: "success"})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range e.bucket.Names() {
			cp, _, err := audit.ParseCheckpoint(e.bucket.Body(n), e.key.Public())
			if err == nil && cp.Seq == r.Seq && cp.Reason == audit.ReasonSealed {
				if len(e.bucket.Names()) <= before {
					t.Fatal("no new checkpoint")
				}
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no checkpoint of record %d after the sealed recording: %v", r.Seq, e.bucket.Names())
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// A rewrite of records this process already checkpointed is noticed by
// the next checkpoint, logged, and the new checkpoint records the chain
// as it is now, while the earlier one keeps the evidence.
func TestCheckpointerNoticesRewriteUnderIt(t *testing.T) {
	e := newTamperEnv(t)
	var logs syncBuf
	c := e.checkpointer(func(o *audit.CheckpointerOptions) { o.Log = slog.New(slog.NewJSONHandler(&logs, nil)) })
	e.append(4)
	e.checkpoint(c)
	e.dropGuards()
	audittest.Rewrite(t, e.st, e, 2, broker.OutcomeSuccess, "")
	e.append(1)
	if names := e.checkpoint(c); len(names) != 1 {
		t.Fatalf("checkpoint after the rewrite: %v", names)
	}
	if !strings.Contains(logs.String(), "audit chain changed under the checkpointer") {
		t.Fatalf("log: %s", logs.String())
	}
	if rep := e.verify(); rep.FirstBad != 2 {
		t.Fatalf("verify = %+v", rep)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

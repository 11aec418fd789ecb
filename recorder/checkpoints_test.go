package recorder

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/audit/audittest"
	"github.com/custos-pam/custos/recorder/manifest"
	"github.com/custos-pam/custos/recorder/store/localdir"
)

// checkpointEnv is a recorder test environment whose audit chain is
// checkpointed into its object store, signed with its manifest key.
type checkpointEnv struct {
	*testEnv
	cps *CheckpointStore
	cp  *audit.Checkpointer
	db  *sql.DB
}

func checkpointed(t *testing.T, env *testEnv) *checkpointEnv {
	t.Helper()
	cps := NewCheckpointStore(env.store, "", time.Hour, false)
	cp, err := audit.NewCheckpointer(audit.CheckpointerOptions{Store: env.state, Checkpoints: cps, Signer: env.signer,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", filepath.Join(env.dir, "state.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &checkpointEnv{testEnv: env, cps: cps, cp: cp, db: db}
}

func (e *checkpointEnv) Exec(q string, args ...any) error {
	_, err := e.db.Exec(q, args...)
	return err
}

// grow appends n records and checkpoints them.
func (e *checkpointEnv) grow(n int) []string {
	e.t.Helper()
	for range n {
		if _, err := e.audit.Append(context.Background(), audit.Entry{Actor: "alice", Action: "request.approve",
			Target: "prod-db", Outcome: broker.OutcomeDenied, Reason: "self_approval"}); err != nil {
			e.t.Fatal(err)
		}
	}
	names, err := e.cp.Checkpoint(context.Background(), audit.ReasonInterval)
	if err != nil {
		e.t.Fatal(err)
	}
	return names
}

func (e *checkpointEnv) verify(mods ...func(*audit.Verifier)) audit.Report {
	e.t.Helper()
	v := &audit.Verifier{Store: e.state, Checkpoints: e.cps, Trusted: []ed25519.PublicKey{e.signer.Public()}}
	for _, m := range mods {
		m(v)
	}
	rep, err := v.Verify(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return rep
}

func checkpointProblems(rep audit.Report) string {
	if rep.Checkpoints == nil {
		return ""
	}
	var s []string
	for _, p := range rep.Checkpoints.Problems {
		s = append(s, p.String())
	}
	return strings.Join(s, "\n")
}

// rewriteAndVerify rewrites record 4 of 9 and recomputes the chain in the
// state store; the checkpoints in the object store name it.
func rewriteAndVerify(t *testing.T, e *checkpointEnv) {
	t.Helper()
	if err := e.Exec("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete"); err != nil {
		t.Fatal(err)
	}
	r := audittest.Rewrite(t, e.state, e, 4, broker.OutcomeSuccess, "")
	if rep, _ := audit.Verify(context.Background(), e.state); !rep.OK {
		t.Fatalf("chain alone: %+v", rep)
	}
	rep := e.verify()
	if rep.OK || rep.FirstBad != 4 || !strings.HasPrefix(rep.Problem, "record 4 (id "+r.ID+")") {
		t.Fatalf("verify = %+v", rep)
	}
}

func TestCheckpointsLocalDir(t *testing.T) {
	e := checkpointed(t, newEnv(t, nil))
	e.grow(3)
	e.grow(3)
	names := e.grow(3)
	rep := e.verify()
	if !rep.OK || rep.Checkpoints.Verified != 3 || rep.Checkpoints.Newest.Seq != 9 {
		t.Fatalf("verify = %+v %+v", rep, rep.Checkpoints)
	}
	ls := e.store.(*localdir.Store)
	p, err := ls.Path(e.cps.Key(names[0]))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o444 || !strings.Contains(p, "/audit/checkpoints/") {
		t.Fatalf("checkpoint file %s: %v, %v", p, fi, err)
	}
	t.Run("RewrittenRecord", func(t *testing.T) { rewriteAndVerify(t, e) })

	// A directory cannot stop deletion: the newest checkpoint removed
	// leaves records uncovered, which shows once they are old enough.
	f := checkpointed(t, newEnv(t, nil))
	f.grow(2)
	last := f.grow(2)
	p, _ = f.store.(*localdir.Store).Path(f.cps.Key(last[0]))
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	rep = f.verify(func(v *audit.Verifier) {
		v.MaxAge = audit.CheckpointMaxAge(5 * time.Minute)
		v.Now = func() time.Time { return time.Now().Add(time.Hour) }
	})
	if rep.OK || !strings.Contains(checkpointProblems(rep), "records from 3 on") {
		t.Fatalf("verify = %+v\n%s", rep, checkpointProblems(rep))
	}
}

func TestCheckpointsS3(t *testing.T) {
	ctx := context.Background()
	env, st, c := s3Env(t)
	e := checkpointed(t, env)
	e.grow(3)
	names := append(e.grow(3), e.grow(3)...)
	rep := e.verify()
	if !rep.OK || rep.Checkpoints.Verified != 3 || rep.Checkpoints.Found != 3 {
		t.Fatalf("verify = %+v %+v\n%s", rep, rep.Checkpoints, checkpointProblems(rep))
	}
	key := e.cps.Key(names[0])
	obj, err := st.Get(ctx, key, "")
	if err != nil || obj.RetentionMode != "COMPLIANCE" || obj.RetainUntil.Before(time.Now().Add(50*time.Minute)) {
		t.Fatalf("checkpoint %s: retention %q until %s, %v", key, obj.RetentionMode, obj.RetainUntil, err)
	}
	// The version cannot be deleted; a delete marker can be placed, and
	// is reported, while the version below still counts.
	if err := c.RemoveObject(ctx, st.Bucket(), key, minio.RemoveObjectOptions{VersionID: obj.VersionID}); err == nil {
		t.Fatal("deleted a checkpoint version under Object Lock")
	}
	if err := c.RemoveObject(ctx, st.Bucket(), key, minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	// A checkpoint signed with another key, written by someone with
	// access to the bucket.
	other, err := manifest.LoadSigner(filepath.Join(t.TempDir(), "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	good, _, _ := audit.ParseCheckpoint(mustGet(t, st, e.cps.Key(names[1])), env.signer.Public())
	good.Replica = "mallory"
	forged, _ := audit.SignCheckpoint(good, other)
	fname := audit.CheckpointName(good)
	if _, err := c.PutObject(ctx, st.Bucket(), e.cps.Key(fname), bytes.NewReader(forged), int64(len(forged)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	rep = e.verify()
	probs := checkpointProblems(rep)
	if rep.OK || rep.FirstBad != 0 || rep.Checkpoints.Verified != 3 || rep.Checkpoints.Found != 5 ||
		!strings.Contains(probs, "checkpoint "+names[0]+": deleted: a delete marker") ||
		!strings.Contains(probs, "checkpoint "+fname+": checkpoint signature invalid") {
		t.Fatalf("verify = %+v %+v\n%s", rep, rep.Checkpoints, probs)
	}
	t.Run("RewrittenRecord", func(t *testing.T) { rewriteAndVerify(t, e) })
}

func mustGet(t *testing.T, st ObjectStore, key string) []byte {
	t.Helper()
	o, err := st.Get(context.Background(), key, "")
	if err != nil {
		t.Fatal(err)
	}
	return o.Body
}

package recorder

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/custos-pam/custos/recorder/store"
	"github.com/custos-pam/custos/recorder/store/localdir"
)

// recordTwo records sessions ses_a (whose output says "SECRET-OF-A") and
// ses_b, and returns the object key of each manifest.
func recordTwo(t *testing.T, r *Recorder) (keyA, keyB string) {
	t.Helper()
	ctx := context.Background()
	for _, id := range []string{"ses_a", "ses_b"} {
		w, err := r.Start(ctx, testHeader(id))
		if err != nil {
			t.Fatal(err)
		}
		w.Output(1, []byte("output of "+id+": SECRET-OF-"+strings.ToUpper(id[4:])+"\r\n"))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	drain(t, r)
	for _, id := range []string{"ses_a", "ses_b"} {
		loc, err := r.locate(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if id == "ses_a" {
			keyA = loc.key
		} else {
			keyB = loc.key
		}
	}
	return keyA, keyB
}

// expectRefused checks that both Open and Verify refuse session id's
// manifest because it belongs to another session.
func expectRefused(t *testing.T, r *Recorder, id, check, detail string) {
	t.Helper()
	ctx := context.Background()
	rec, err := r.Open(ctx, id, Access{Actor: "sec", Purpose: "test"})
	if err == nil {
		var out bytes.Buffer
		for e := range rec.Events(ctx) {
			out.Write(e.Data)
		}
		t.Fatalf("Open(%s) succeeded and returned %q", id, out.String())
	}
	if !errors.Is(err, ErrIntegrity) || !strings.Contains(err.Error(), detail) {
		t.Errorf("Open(%s) = %v; want ErrIntegrity saying %q", id, err, detail)
	}
	rep, err := r.Verify(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Intact || len(rep.Problems) == 0 {
		t.Fatalf("Verify(%s) = %+v; want a failure", id, rep)
	}
	found := false
	for _, p := range rep.Problems {
		if p.Check == check && strings.Contains(p.Detail, detail) {
			found = true
		}
	}
	if !found {
		t.Errorf("Verify(%s) problems %v; want check %q saying %q", id, rep.Problems, check, detail)
	}
}

// An attacker with write access to a local recordings directory replaces
// session B's manifest with session A's (validly signed) manifest, or
// places A's manifest under a session ID the index does not know. Neither
// may be read as that session.
func TestOpenRefusesManifestOfAnotherSessionLocal(t *testing.T) {
	ctx := context.Background()
	t.Run("OverAnotherSession", func(t *testing.T) {
		env := newEnv(t, nil)
		r := env.recorder()
		keyA, keyB := recordTwo(t, r)
		ls := env.store.(*localdir.Store)
		pa, _ := ls.Path(keyA)
		pb, _ := ls.Path(keyB)
		a, err := os.ReadFile(pa)
		if err != nil {
			t.Fatal(err)
		}
		writable(t, pb)
		if err := os.WriteFile(pb, a, 0o444); err != nil {
			t.Fatal(err)
		}
		expectRefused(t, r, "ses_b", "session", "the recording of session ses_a, not ses_b")
		// Without the session index (another broker, or an index that
		// lost the entry) the manifest's own contents still refuse it.
		other := newEnv(t, env.store)
		other.signer, other.keys = env.signer, env.keys
		r2 := other.recorder(func(c *Config) { c.Index = nil })
		expectRefused(t, r2, "ses_b", "session", "the recording of session ses_a, not ses_b")
		// Session A itself still reads.
		if evs := readAll(t, r, "ses_a"); len(evs) == 0 {
			t.Fatal("session A has no events")
		}
	})
	t.Run("UnderANewSessionID", func(t *testing.T) {
		env := newEnv(t, nil)
		r := env.recorder()
		keyA, _ := recordTwo(t, r)
		ls := env.store.(*localdir.Store)
		pa, _ := ls.Path(keyA)
		a, err := os.ReadFile(pa)
		if err != nil {
			t.Fatal(err)
		}
		keyC := strings.Replace(keyA, "/ses_a/", "/ses_c/", 1)
		if _, err := ls.Put(ctx, keyC, a, store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		expectRefused(t, r, "ses_c", "session", "the recording of session ses_a, not ses_c")
	})
}

// The same on an Object Lock bucket: an object copied (server side) from
// session A's manifest to a key of another session.
func TestS3OpenRefusesCopiedManifest(t *testing.T) {
	ctx := context.Background()
	env, st, c := s3Env(t)
	r := env.recorder()
	keyA, _ := recordTwo(t, r)
	keyC := strings.Replace(keyA, "/ses_a/", "/ses_c/", 1)
	_, err := c.CopyObject(ctx, minio.CopyDestOptions{Bucket: st.Bucket(), Object: keyC},
		minio.CopySrcOptions{Bucket: st.Bucket(), Object: keyA})
	if err != nil {
		t.Fatal(err)
	}
	expectRefused(t, r, "ses_c", "session", "the recording of session ses_a, not ses_c")
	if evs := readAll(t, r, "ses_a"); len(evs) == 0 {
		t.Fatal("session A has no events")
	}
}

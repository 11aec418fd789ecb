package localdir

import (
	"context"
	"errors"
	"os"
	"reflect"
	"testing"

	"github.com/custos-pam/custos/recorder/store"
)

func TestLocalDir(t *testing.T) {
	ctx := context.Background()
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	key := "sessions/2025/01/02/ses_1/chunk-000001"
	if _, err := s.Put(ctx, key, []byte("one"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	// A retried identical write succeeds; different bytes never replace.
	if _, err := s.Put(ctx, key, []byte("one"), store.PutOptions{}); err != nil {
		t.Fatalf("identical retry: %v", err)
	}
	if _, err := s.Put(ctx, key, []byte("two"), store.PutOptions{}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("overwrite: %v", err)
	}
	p, _ := s.Path(key)
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o444 {
		t.Fatalf("mode %v", fi.Mode())
	}
	o, err := s.Get(ctx, key, "")
	if err != nil || string(o.Body) != "one" {
		t.Fatalf("Get = %q, %v", o.Body, err)
	}
	if _, err := s.Get(ctx, key+"x", ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	if _, err := s.Get(ctx, key, "v2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("version on a versionless store: %v", err)
	}
	s.Put(ctx, "sessions/2025/01/02/ses_1/manifest.json", []byte("{}"), store.PutOptions{})
	keys, err := s.List(ctx, "sessions/2025/01/02/ses_1/")
	if err != nil || !reflect.DeepEqual(keys, []string{key, "sessions/2025/01/02/ses_1/manifest.json"}) {
		t.Fatalf("List = %v, %v", keys, err)
	}
	vs, err := s.Versions(ctx, key)
	if err != nil || len(vs) != 1 || vs[0].Key != key || !vs[0].IsLatest {
		t.Fatalf("Versions = %+v, %v", vs, err)
	}
	for _, bad := range []string{"", "../x", "a/../../b", "/abs", "a//b", `a\b`} {
		if _, err := s.Put(ctx, bad, []byte("x"), store.PutOptions{}); err == nil {
			t.Errorf("accepted key %q", bad)
		}
	}
}

package recorder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"reflect"
	"testing"
)

func TestChunkEventsAndManifestFile(t *testing.T) {
	env := newEnv(t, nil)
	r := env.recorder(func(c *Config) { c.ChunkSize = 256 })
	ctx := context.Background()
	w, err := r.Start(ctx, testHeader("sess-chunks"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if err := w.Output(1, fmt.Appendf(nil, "line %02d of output that fills chunks\r\n", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	drain(t, r)

	all := readAll(t, r, "sess-chunks")
	rec, err := r.Open(ctx, "sess-chunks", Access{Actor: "sec", Purpose: "test"})
	if err != nil {
		t.Fatal(err)
	}
	n := len(rec.Manifest().Chunks)
	if n < 3 {
		t.Fatalf("want several chunks, got %d", n)
	}
	var joined []any
	for i := range n {
		evs, err := rec.ChunkEvents(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		if uint32(len(evs)) != rec.Manifest().Chunks[i].Events {
			t.Fatalf("chunk %d: %d events, manifest says %d", i, len(evs), rec.Manifest().Chunks[i].Events)
		}
		for _, e := range evs {
			joined = append(joined, e)
		}
	}
	var want []any
	for _, e := range all {
		want = append(want, e)
	}
	if !reflect.DeepEqual(joined, want) {
		t.Fatalf("chunk-by-chunk events differ from Events")
	}
	if _, err := rec.ChunkEvents(ctx, n); err == nil {
		t.Fatal("chunk past the end: want an error")
	}

	raw, err := r.ManifestFile(ctx, "sess-chunks")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	if got := hex.EncodeToString(sum[:]); got != env.session("sess-chunks").ManifestHash || got != rec.ManifestHash() {
		t.Fatalf("manifest file hashes to %s, index says %s", got, env.session("sess-chunks").ManifestHash)
	}
}

package recorder

import (
	"bytes"
	"context"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/custos-pam/custos/recorder/event"
)

// BenchmarkRecorderThroughput measures events through the whole write path:
// encode, seal, fsync into the spool and upload to MinIO under Object
// Lock, until the manifest is stored (Close and Drain are timed). MB/s is
// event payload; "terminal" models an SSH stream, "statements" the
// PostgreSQL proxy under pgbench.
func BenchmarkRecorderThroughput(b *testing.B) {
	stmt := "UPDATE pgbench_accounts SET abalance = abalance + -4012 WHERE aid = 8175340;"
	cases := []struct {
		name  string
		bytes int
		write func(w *Writer) error
	}{
		{"terminal_32KiB", 32 << 10, nil},
		{"statements", len(stmt), func(w *Writer) error { return w.Query(stmt) }},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			env, _, _ := s3Env(b)
			r := env.recorder()
			payload := bytes.Repeat([]byte("0123456789abcdef"), bc.bytes/16)
			write := bc.write
			if write == nil {
				write = func(w *Writer) error { return w.Output(1, payload) }
			}
			b.SetBytes(int64(bc.bytes))
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			w, err := r.Start(ctx, testHeader("ses_bench"))
			if err != nil {
				b.Fatal(err)
			}
			for range b.N {
				if err := write(w); err != nil {
					b.Fatal(err)
				}
			}
			appended := time.Since(start)
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
			drain(b, r)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
			b.ReportMetric(float64(appended.Nanoseconds())/float64(b.N), "append-ns/event")
		})
	}
}

// BenchmarkWriterAppend measures the proxy-facing cost of one event: what a
// relay goroutine pays per write, with sealing and spooling in the
// background.
func BenchmarkWriterAppend(b *testing.B) {
	ctx := context.Background()
	env := newEnv(b, nil)
	r := env.recorder()
	w, err := r.Start(ctx, testHeader("ses_append"))
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	e := event.Event{Kind: event.KindPGQuery, Text: "SELECT abalance FROM pgbench_accounts WHERE aid = 42;"}
	b.SetBytes(int64(len(e.Text)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := w.Record(e); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRecorderLocal measures what the SSH proxy's recorded stream
// costs the broker: 32 KiB output events (one relay read each) through
// encode, compression, sealing, the fsynced spool and the local store,
// until the manifest is stored. "zeros" is the `head -c 1G /dev/zero`
// stream of BenchmarkSSHStream, "text" terminal output (the module's Go
// source), "random" incompressible bytes.
func BenchmarkRecorderLocal(b *testing.B) {
	for _, kind := range []string{"zeros", "text", "random"} {
		b.Run(kind, func(b *testing.B) {
			ctx := context.Background()
			env := newEnv(b, nil)
			r := env.recorder()
			payload := benchPayload(b, kind, 1<<20)
			const ev = 32 << 10
			b.SetBytes(ev)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			w, err := r.Start(ctx, testHeader("ses_bench"))
			if err != nil {
				b.Fatal(err)
			}
			for i := range b.N {
				o := i * ev % len(payload)
				if err := w.Output(1, payload[o:o+ev]); err != nil {
					b.Fatal(err)
				}
			}
			appended := time.Since(start)
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
			drain(b, r)
			b.StopTimer()
			b.ReportMetric(float64(appended.Nanoseconds())/float64(b.N), "append-ns/event")
		})
	}
}

// benchPayload returns n bytes of zeros, text or random bytes.
func benchPayload(tb testing.TB, kind string, n int) []byte {
	tb.Helper()
	out := make([]byte, 0, n)
	switch kind {
	case "zeros":
		out = out[:n]
	case "random":
		rng := rand.NewChaCha8([32]byte{1})
		out = out[:n]
		rng.Read(out)
	case "text":
		// The module's Go source, as a terminal shows it.
		err := filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
			if err != nil || len(out) >= n {
				return err
			}
			if d.IsDir() || filepath.Ext(p) != ".go" {
				return nil
			}
			src, err := os.ReadFile(p)
			out = append(out, bytes.ReplaceAll(src, []byte("\n"), []byte("\r\n"))...)
			return err
		})
		if err != nil || len(out) < n {
			tb.Fatalf("text payload: %d bytes: %v", len(out), err)
		}
		out = out[:n]
	default:
		tb.Fatalf("payload %q", kind)
	}
	return out
}

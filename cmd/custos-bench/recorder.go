package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	vaultcreds "github.com/custos-pam/custos/broker/creds/vault"
	"github.com/custos-pam/custos/broker/store/sqlite"
	"github.com/custos-pam/custos/cmd/custos/app"
	"github.com/custos-pam/custos/recorder"
	"github.com/custos-pam/custos/recorder/event"
	objstore "github.com/custos-pam/custos/recorder/store"
	s3store "github.com/custos-pam/custos/recorder/store/s3"
)

// Recorder throughput: the real recorder package built from the deployed
// configuration (.dev/custos.yaml: the S3 store on the stack's MinIO with
// Object Lock, data keys wrapped by Vault Transit) by the broker's own
// constructor, fed terminal output in 32 KiB events as the SSH relay
// does, timed from the session's start until its manifest is stored
// (Close and Drain). Only the spool, the signing key, the audit log and
// the session index are the driver's own (a scratch directory), so the
// running broker's spool and state are not touched; the recordings land
// in the stack's bucket under the prefix custos-bench/.

// recorderMiB is the payload of one recorded session. Every byte stays
// in the stack's bucket under Object Lock for the configured retention
// (random bytes do not compress), so the session is kept well below the
// streams' 1 GiB: a full run stores about 4 GB, a QUICK run about 1 GB.
func (p plan) recorderMiB() int64 {
	if p.quick {
		return 128
	}
	return 256
}

// loadDeployedConfig loads the broker's rendered configuration with the
// stack's environment, for secret references such as env:VAULT_TOKEN.
func (s *stack) loadDeployedConfig() (*config.Config, error) {
	for k, v := range s.env {
		if _, set := os.LookupEnv(k); !set {
			os.Setenv(k, v)
		}
	}
	c, err := config.Load(filepath.Join(s.dev, "custos.yaml"))
	if err != nil {
		return nil, fmt.Errorf("bench: deployed config: %w", err)
	}
	return c, nil
}

// newBenchRecorder builds a recorder as the broker does, with scratch
// spool, signing key and state under dir.
func (s *stack) newBenchRecorder(ctx context.Context, dir string, c *config.Config) (*recorder.Recorder, func(), error) {
	c.Recording.SpoolDir = filepath.Join(dir, "spool")
	c.Recording.SigningKey = filepath.Join(dir, "signing.key")
	c.Recording.RetiredSigningKeys = filepath.Join(dir, "retired")
	c.Recording.S3.Prefix = "custos-bench/"
	st, err := sqlite.Open(ctx, filepath.Join(dir, "state.db"))
	if err != nil {
		return nil, nil, fmt.Errorf("bench: recorder state: %w", err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var vc *vaultcreds.Client
	if c.Recording.Encryption == "vault" {
		if vc, err = vaultcreds.New(c.Vault, log); err != nil {
			st.Close()
			return nil, nil, fmt.Errorf("bench: vault: %w", err)
		}
	}
	rec, err := app.NewRecorder(ctx, c, vaultAPI(vc), app.RecorderDeps{Audit: audit.NewLog(st),
		Index: broker.SessionIndex{Store: st}, Logger: log})
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return rec, func() { rec.Close(); st.Close() }, nil
}

func vaultAPI(c *vaultcreds.Client) *vaultapi.Client {
	if c == nil {
		return nil
	}
	return c.API()
}

// recordOnce records one session of n bytes and returns MB/s.
func recordOnce(ctx context.Context, rec *recorder.Recorder, id string, n int64, pool []byte) (float64, error) {
	start := time.Now()
	w, err := rec.Start(ctx, event.Header{SessionID: id, GrantID: "grt_bench", User: "alice", Target: "demo-ssh",
		Role: "ops", Protocol: "ssh", ClientAddr: "127.0.0.1:0", Policy: event.Policy{Reason: "make bench"}})
	if err != nil {
		return 0, fmt.Errorf("bench: recorder start: %w", err)
	}
	const event = 32 << 10
	for sent := int64(0); sent < n; sent += event {
		off := sent % int64(len(pool)-event)
		if err := w.Output(1, pool[off:off+event]); err != nil {
			w.Close()
			return 0, fmt.Errorf("bench: recorder write: %w", err)
		}
	}
	if err := w.Close(); err != nil {
		return 0, fmt.Errorf("bench: recorder close: %w", err)
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := rec.Drain(dctx); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds() / 1e6, nil
}

// recorderScenario reports the recorder's MB/s from write to stored.
func (b *bench) recorderScenario() error {
	ctx := context.Background()
	dir, err := os.MkdirTemp(b.s.tmp, "recorder-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg, err := b.s.loadDeployedConfig()
	if err != nil {
		return err
	}
	rec, closeRec, err := b.s.newBenchRecorder(ctx, dir, cfg)
	if err != nil {
		return err
	}
	defer closeRec()
	n := b.p.recorderMiB() << 20
	rc := cfg.Recording
	// Random bytes do not compress (the worst case: every byte is
	// encrypted and uploaded); terminal text compresses several-fold.
	random := make([]byte, 8<<20)
	rng := rand.NewChaCha8([32]byte{19})
	_, _ = rng.Read(random)
	text := bytes.Repeat([]byte("drwxr-xr-x  2 root root 4096 Dec  5 03:10 custos-bench-0123456789\r\n"), (8<<20)/64)
	for _, c := range []struct {
		name string
		pool []byte
		t    *target
	}{{"incompressible output", random, atLeast("≥ 200", 200)}, {"terminal text", text, nil}} {
		var mbps []float64
		for i := 0; i < b.p.runs; i++ {
			v, err := recordOnce(ctx, rec, broker.NewID("ses"), n, c.pool)
			if err != nil {
				return err
			}
			mbps = append(mbps, v)
		}
		scn := fmt.Sprintf("recorder, %d MiB session of %s (spool, encryption, upload to MinIO)", b.p.recorderMiB(), c.name)
		b.add(newRow(scn, shared, "MB/s from write to stored", "MB/s", mbps, c.t))
		if c.t == nil {
			continue
		}
		// The object store alone, as a peer: the same bytes as 1 MiB
		// objects, four PUTs at a time (the recorder's uploaders).
		var raw []float64
		for i := 0; i < b.p.runs; i++ {
			v, err := rawUpload(ctx, rc, n, c.pool)
			if err != nil {
				return err
			}
			raw = append(raw, v)
		}
		b.add(newRow(scn, shared, "MinIO PUT alone (1 MiB objects, 4 at a time)", "MB/s", raw, nil))
		b.add(newRow(scn, shared, "recorder ÷ MinIO PUT alone", "×", ratios(mbps, raw), nil))
		local, err := b.recordLocal(ctx, cfg, n, c.pool)
		if err != nil {
			return err
		}
		b.add(newRow(scn, shared, "recorder with a local-directory store (no upload)", "MB/s", local, nil))
	}
	return nil
}

// rawUpload PUTs n bytes to the recording bucket as 1 MiB objects under
// Object Lock retention, four at a time, and returns MB/s.
func rawUpload(ctx context.Context, rc config.Recording, n int64, pool []byte) (float64, error) {
	ak, err := rc.S3.AccessKey.Resolve()
	if err != nil {
		return 0, err
	}
	sk, err := rc.S3.SecretKey.Resolve()
	if err != nil {
		return 0, err
	}
	st, err := s3store.New(s3store.Config{Endpoint: rc.S3.Endpoint, Region: rc.S3.Region, Bucket: rc.S3.Bucket,
		AccessKey: ak, SecretKey: sk, Insecure: rc.S3.Insecure})
	if err != nil {
		return 0, err
	}
	const obj = 1 << 20
	prefix := "custos-bench/raw/" + broker.NewID("put") + "/"
	retain := time.Now().Add(rc.Retention.D())
	jobs := make(chan int64)
	errs := make(chan error, 4)
	start := time.Now()
	for range 4 {
		go func() {
			var first error
			for off := range jobs {
				if first != nil {
					continue
				}
				at := off % int64(len(pool)-obj)
				_, first = st.Put(ctx, fmt.Sprintf("%s%08d", prefix, off/obj), pool[at:at+obj], objstore.PutOptions{RetainUntil: retain})
			}
			errs <- first
		}()
	}
	for off := int64(0); off < n; off += obj {
		jobs <- off
	}
	close(jobs)
	for range 4 {
		if err := <-errs; err != nil {
			return 0, fmt.Errorf("bench: raw upload: %w", err)
		}
	}
	return float64(n) / time.Since(start).Seconds() / 1e6, nil
}

// recordLocal runs the recorder with the local-directory store in place
// of S3 (same spool, sealing and key wrapping), to show the recorder's
// own ceiling without the object store.
func (b *bench) recordLocal(ctx context.Context, deployed *config.Config, n int64, pool []byte) ([]float64, error) {
	dir, err := os.MkdirTemp(b.s.tmp, "recorder-local-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	c := *deployed
	c.Recording.Store, c.Recording.Dir = "local", filepath.Join(dir, "objects")
	rec, closeRec, err := b.s.newBenchRecorder(ctx, dir, &c)
	if err != nil {
		return nil, err
	}
	defer closeRec()
	var out []float64
	for i := 0; i < b.p.runs; i++ {
		v, err := recordOnce(ctx, rec, broker.NewID("ses"), n, pool)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

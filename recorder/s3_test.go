package recorder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/deploy/devstack"
	"github.com/custos-pam/custos/recorder/event"
	"github.com/custos-pam/custos/recorder/keywrap"
	"github.com/custos-pam/custos/recorder/store/s3"
)

// s3Env is a test environment recording into a fresh Object Lock bucket
// of the shared devstack MinIO.
func s3Env(t testing.TB) (*testEnv, *s3.Store, *minio.Client) {
	t.Helper()
	m := devstack.StartMinIO(t)
	bucket := m.NewLockedBucket(t)
	st, err := s3.New(s3.Config{Endpoint: m.Endpoint, Bucket: bucket, AccessKey: m.AccessKey, SecretKey: m.SecretKey, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	return newEnv(t, st), st, st.Client()
}

func TestS3SessionWrittenListedVerified(t *testing.T) {
	ctx := context.Background()
	env, st, _ := s3Env(t)
	r := env.recorder()
	h := testHeader("ses_s3_basic")
	w, err := r.Start(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	writeShellSession(t, w)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	drain(t, r)

	// Listed: in the session index with the filters the CLI uses, and in
	// the store.
	var listed []broker.Session
	err = env.state.View(ctx, func(tx broker.Tx) error {
		var err error
		listed, err = tx.ListSessions(broker.SessionFilter{User: "alice", Target: "prod-db", Protocol: "ssh",
			Contains: "UPTIME", States: []broker.SessionState{broker.SessionClosed}})
		return err
	})
	if err != nil || len(listed) != 1 || listed[0].ID != "ses_s3_basic" || listed[0].ManifestHash == "" {
		t.Fatalf("index list: %+v, %v", listed, err)
	}
	stored, err := r.List(ctx, time.Now().Add(-24*time.Hour), time.Now().Add(24*time.Hour))
	if err != nil || len(stored) != 1 || stored[0].SessionID != "ses_s3_basic" || !stored[0].Closed {
		t.Fatalf("store list: %+v, %v", stored, err)
	}

	rep, err := r.Verify(ctx, "ses_s3_basic")
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Intact || len(rep.Tampering) != 0 || rep.Store != "s3" || rep.ManifestVersion == "" {
		t.Fatalf("verify: %+v", rep)
	}
	// Every object is under COMPLIANCE retention until start + 6 years.
	keys, _ := st.List(ctx, "sessions/")
	want := listed[0].StartedAt.Add(DefaultRetention).Truncate(time.Second)
	for _, k := range keys {
		o, err := st.Get(ctx, k, "")
		if err != nil {
			t.Fatal(err)
		}
		if o.RetentionMode != "COMPLIANCE" || !o.RetainUntil.Equal(want) {
			t.Fatalf("%s: retention %s until %s, want COMPLIANCE until %s", k, o.RetentionMode, o.RetainUntil, want)
		}
		if strings.Contains(k, "chunk-") && bytes.Contains(o.Body, []byte("secret.txt")) {
			t.Fatalf("%s holds plaintext", k)
		}
	}
	var out bytes.Buffer
	for _, e := range readAll(t, r, "ses_s3_basic") {
		out.Write(e.Data)
	}
	if !strings.Contains(out.String(), "secret.txt") {
		t.Fatalf("read back: %q", out.String())
	}
}

func TestS3PerTargetRetentionAndLegalHold(t *testing.T) {
	ctx := context.Background()
	env, st, _ := s3Env(t)
	r := env.recorder()
	h := testHeader("ses_s3_hold")
	h.Policy.Retention = 48 * time.Hour
	h.Policy.LegalHold = true
	w, _ := r.Start(ctx, h)
	w.Output(1, []byte("x"))
	w.Close()
	drain(t, r)
	rep, err := r.Verify(ctx, "ses_s3_hold")
	if err != nil || !rep.Intact || !rep.Retention.LegalHold {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	keys, _ := st.List(ctx, "sessions/")
	for _, k := range keys {
		o, _ := st.Get(ctx, k, "")
		if !o.LegalHold || o.RetainUntil.After(time.Now().Add(49*time.Hour)) || o.RetainUntil.Before(time.Now().Add(47*time.Hour)) {
			t.Fatalf("%s: legal hold %v, until %s", k, o.LegalHold, o.RetainUntil)
		}
	}
}

func TestS3LockedVersionsCannotBeDeleted(t *testing.T) {
	ctx := context.Background()
	env, st, c := s3Env(t)
	r := env.recorder()
	w, _ := r.Start(ctx, testHeader("ses_s3_delete"))
	w.Output(1, []byte("evidence"))
	w.Close()
	drain(t, r)
	loc, err := r.locate(ctx, "ses_s3_delete")
	if err != nil {
		t.Fatal(err)
	}
	ch := loc.signed.Manifest.Chunks[0]
	for _, bypass := range []bool{false, true} {
		for _, obj := range []struct{ key, version string }{{ch.Key, ch.VersionID}, {loc.key, loc.versionID}} {
			err := c.RemoveObject(ctx, st.Bucket(), obj.key, minio.RemoveObjectOptions{VersionID: obj.version, GovernanceBypass: bypass})
			if err == nil {
				t.Fatalf("deleted locked version %s of %s (governance bypass %v)", obj.version, obj.key, bypass)
			}
			t.Logf("delete %s (bypass %v): %v", obj.key, bypass, err)
		}
	}
	// A delete without a version id only stacks a delete marker: the
	// locked version stays, and verify reports the attempt.
	if err := c.RemoveObject(ctx, st.Bucket(), ch.Key, minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Verify(ctx, "ses_s3_delete")
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Intact || len(rep.Tampering) != 1 || !rep.Tampering[0].DeleteMarker || rep.Tampering[0].Key != ch.Key {
		t.Fatalf("after delete marker: %+v", rep)
	}
	if !strings.Contains(rep.Verdict, "intact; 1 tampering attempt") {
		t.Fatalf("verdict %q", rep.Verdict)
	}
}

func TestS3OverwriteIsReportedAsTampering(t *testing.T) {
	ctx := context.Background()
	env, st, c := s3Env(t)
	r := env.recorder(func(c *Config) { c.ChunkSize = 1 << 10 })
	w, _ := r.Start(ctx, testHeader("ses_s3_over"))
	for i := range 5 {
		w.Output(1, bytes.Repeat([]byte{'a' + byte(i)}, 1<<10))
	}
	w.Close()
	drain(t, r)
	loc, _ := r.locate(ctx, "ses_s3_over")
	target := loc.signed.Manifest.Chunks[1]
	forged := []byte("forged chunk")
	if _, err := c.PutObject(ctx, st.Bucket(), target.Key, bytes.NewReader(forged), int64(len(forged)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutObject(ctx, st.Bucket(), loc.key, bytes.NewReader(forged), int64(len(forged)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Verify(ctx, "ses_s3_over")
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Intact {
		t.Fatalf("pinned versions were not what verify read: %+v", rep.Problems)
	}
	keys := map[string]bool{}
	for _, tm := range rep.Tampering {
		keys[tm.Key] = true
	}
	if len(rep.Tampering) != 2 || !keys[target.Key] || !keys[loc.key] || !strings.Contains(rep.Verdict, "tampering") {
		t.Fatalf("tampering: %+v", rep.Tampering)
	}
	// Reading still returns the original data.
	var out bytes.Buffer
	for _, e := range readAll(t, r, "ses_s3_over") {
		out.Write(e.Data)
	}
	if bytes.Contains(out.Bytes(), forged) || !bytes.Contains(out.Bytes(), bytes.Repeat([]byte{'b'}, 1<<10)) {
		t.Fatal("read the forged version")
	}
}

func TestS3RefusesBucketWithoutObjectLock(t *testing.T) {
	m := devstack.StartMinIO(t)
	c, err := m.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	bucket := "custos-unlocked-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	st, _ := s3.New(s3.Config{Endpoint: m.Endpoint, Bucket: bucket, AccessKey: m.AccessKey, SecretKey: m.SecretKey, Insecure: true})
	env := newEnv(t, st)
	_, err = New(ctx, env.config())
	if !errors.Is(err, s3.ErrNoObjectLock) || !strings.Contains(err.Error(), "Object Lock") {
		t.Fatalf("New on an unlocked bucket: %v", err)
	}
}

func TestCrashRecoveryS3(t *testing.T) {
	env, st, _ := s3Env(t)
	m := devstack.StartMinIO(t)
	crashAndRecover(t, env, helperConfig{SessionID: "ses_crash_s3",
		S3: s3.Config{Endpoint: m.Endpoint, Bucket: st.Bucket(), AccessKey: m.AccessKey, SecretKey: m.SecretKey, Insecure: true}})
}

// ownMinIO is a MinIO server this test controls, so it can be stopped and
// restarted on the same port and data.
type ownMinIO struct {
	t        *testing.T
	bin, dir string
	addr     string
	cmd      *exec.Cmd
}

const ownMinIOUser, ownMinIOPass = "custosown", "custos-own-secret"

func startOwnMinIO(t *testing.T) *ownMinIO {
	bin, err := devstack.ToolPath("minio")
	if err != nil {
		devstack.Require(t, "minio", devstack.InstallHint)
	}
	m := &ownMinIO{t: t, bin: bin, dir: t.TempDir(), addr: "127.0.0.1:" + strconv.Itoa(devstack.FreePort(t))}
	m.start()
	t.Cleanup(m.stop)
	return m
}

func (m *ownMinIO) start() {
	m.t.Helper()
	cmd := exec.Command(m.bin, "server", "--quiet", "--address", m.addr, filepath.Join(m.dir, "data"))
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+ownMinIOUser, "MINIO_ROOT_PASSWORD="+ownMinIOPass,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=on", "HOME="+m.dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	log, _ := os.Create(filepath.Join(m.dir, "minio.log"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	m.cmd = cmd
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + m.addr + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(m.dir, "minio.log"))
			m.t.Fatalf("own minio not ready: %v\n%s", err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (m *ownMinIO) stop() {
	if m.cmd != nil {
		m.cmd.Process.Kill()
		m.cmd.Wait()
		m.cmd = nil
	}
}

func (m *ownMinIO) store(t *testing.T) *s3.Store {
	t.Helper()
	st, err := s3.New(s3.Config{Endpoint: m.addr, Bucket: "recordings", AccessKey: ownMinIOUser, SecretKey: ownMinIOPass, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if ok, _ := st.Client().BucketExists(ctx, "recordings"); !ok {
		if err := st.Client().MakeBucket(ctx, "recordings", minio.MakeBucketOptions{ObjectLocking: true}); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// TestS3OutageNothingLost stops MinIO in the middle of a session and
// starts it again: the session goes on, and once the store is back every
// event is uploaded and verified.
func TestS3OutageNothingLost(t *testing.T) {
	ctx := context.Background()
	m := startOwnMinIO(t)
	env := newEnv(t, m.store(t))
	r := env.recorder(func(c *Config) { c.MaxUploadOutage = time.Minute })
	w, err := r.Start(ctx, testHeader("ses_s3_outage"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	write := func(d time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end); n++ {
			if err := w.Output(1, []byte("line "+strconv.Itoa(n)+"\n")); err != nil {
				t.Fatalf("write %d: %v", n, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	write(1500 * time.Millisecond)
	m.stop()
	write(3 * time.Second)
	select {
	case <-w.Done():
		t.Fatalf("session failed within the allowed outage: %v", w.Err())
	default:
	}
	m.start()
	write(1500 * time.Millisecond)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	drain(t, r)
	rep, err := r.Verify(ctx, "ses_s3_outage")
	if err != nil || !rep.Intact || rep.State != "closed" || len(rep.Tampering) != 0 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	got := 0
	for _, e := range readAll(t, r, "ses_s3_outage") {
		if e.Kind == event.KindOutput {
			if want := "line " + strconv.Itoa(got) + "\n"; string(e.Data) != want {
				t.Fatalf("event %q, want %q", e.Data, want)
			}
			got++
		}
	}
	if got != n {
		t.Fatalf("recovered %d of %d events", got, n)
	}
}

// TestS3OutagePastAllowance stops MinIO for longer than MaxUploadOutage:
// the fail-closed session is told to end.
func TestS3OutagePastAllowance(t *testing.T) {
	ctx := context.Background()
	m := startOwnMinIO(t)
	env := newEnv(t, m.store(t))
	r := env.recorder(func(c *Config) { c.MaxUploadOutage = time.Second })
	w, err := r.Start(ctx, testHeader("ses_s3_down"))
	if err != nil {
		t.Fatal(err)
	}
	m.stop()
	deadline := time.After(30 * time.Second)
	for {
		w.Output(1, []byte("tick\n"))
		select {
		case <-w.Done():
		case <-deadline:
			t.Fatal("session still running 30s into an outage allowed 1s")
		case <-time.After(50 * time.Millisecond):
			continue
		}
		break
	}
	if !errors.Is(w.Err(), ErrStoreUnavailable) || r.Ready() == nil {
		t.Fatalf("Err %v, Ready %v", w.Err(), r.Ready())
	}
	if recs := env.waitAudit("session.recording.failed", 1); len(recs) != 1 {
		t.Fatalf("failure not audited: %+v", recs)
	}
	m.start()
	w.Terminate("broker", "recording store unavailable")
	drain(t, r)
	if rep, err := r.Verify(ctx, "ses_s3_down"); err != nil || !rep.Intact {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
}

// TestS3BrokerPolicy records, verifies and reads a session with
// credentials restricted by deploy/minio/custos-broker-policy.json (an STS
// session policy on MinIO), and shows those credentials cannot delete.
func TestS3BrokerPolicy(t *testing.T) {
	ctx := context.Background()
	raw, err := os.ReadFile(filepath.Join(devstack.RepoRoot(), "deploy", "minio", "custos-broker-policy.json"))
	if err != nil {
		t.Fatal(err)
	}
	var pol struct {
		Statement []struct {
			Effect string
			Action []string
		}
	}
	if err := json.Unmarshal(raw, &pol); err != nil {
		t.Fatal(err)
	}
	for _, st := range pol.Statement {
		for _, a := range st.Action {
			if st.Effect == "Allow" && (strings.Contains(a, "Delete") || strings.Contains(a, "Bypass") || strings.Contains(a, "*")) {
				t.Fatalf("policy allows %s", a)
			}
		}
	}

	m := devstack.StartMinIO(t)
	bucket := m.NewLockedBucket(t)
	policy := strings.ReplaceAll(string(raw), "custos-recordings", bucket)
	sts, err := credentials.NewSTSAssumeRole(m.URL(), credentials.STSAssumeRoleOptions{
		AccessKey: m.AccessKey, SecretKey: m.SecretKey, Policy: policy, DurationSeconds: 900,
	})
	if err != nil {
		t.Fatal(err)
	}
	v, err := sts.GetWithContext(nil)
	if err != nil {
		t.Fatalf("assume role with the broker policy: %v", err)
	}
	st, err := s3.New(s3.Config{Endpoint: m.Endpoint, Bucket: bucket, AccessKey: v.AccessKeyID,
		SecretKey: v.SecretAccessKey, SessionToken: v.SessionToken, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	env := newEnv(t, st)
	r := env.recorder()
	h := testHeader("ses_s3_policy")
	h.Policy.LegalHold = true
	w, err := r.Start(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	w.Output(1, []byte("restricted"))
	w.Close()
	drain(t, r)
	rep, err := r.Verify(ctx, "ses_s3_policy")
	if err != nil || !rep.Intact {
		t.Fatalf("verify with the broker policy: %+v, %v", rep, err)
	}
	if evs := readAll(t, r, "ses_s3_policy"); len(evs) < 2 {
		t.Fatalf("read %d events", len(evs))
	}
	loc, _ := r.locate(ctx, "ses_s3_policy")
	err = st.Client().RemoveObject(ctx, bucket, loc.key, minio.RemoveObjectOptions{})
	if err == nil || minio.ToErrorResponse(err).Code != "AccessDenied" {
		t.Fatalf("the broker's credentials could delete (or place a delete marker): %v", err)
	}
}

// TestS3WithVaultTransit records with data keys from the devstack Vault's
// Transit engine (broker token, bootstrap policy) into MinIO, and reads back.
func TestS3WithVaultTransit(t *testing.T) {
	ctx := context.Background()
	v := devstack.StartVault(t)
	v.Bootstrap(t, devstack.StartPostgres(t))
	vcfg := vault.DefaultConfig()
	vcfg.Address = v.Addr
	vc, err := vault.NewClient(vcfg)
	if err != nil {
		t.Fatal(err)
	}
	vc.SetToken(v.BrokerToken)
	env, _, _ := s3Env(t)
	env.keys = keywrap.NewTransit(vc, "transit", "custos-recordings")
	r := env.recorder()
	w, err := r.Start(ctx, testHeader("ses_s3_transit"))
	if err != nil {
		t.Fatal(err)
	}
	w.Output(1, []byte("wrapped by vault"))
	w.Close()
	drain(t, r)
	loc, err := r.locate(ctx, "ses_s3_transit")
	if err != nil {
		t.Fatal(err)
	}
	if k := loc.signed.Manifest.Key; k.Wrapper != "vault-transit" || k.KeyID != "transit/custos-recordings" || !strings.HasPrefix(k.Ciphertext, "vault:v") {
		t.Fatalf("manifest key: %+v", k)
	}
	var out bytes.Buffer
	for _, e := range readAll(t, r, "ses_s3_transit") {
		out.Write(e.Data)
	}
	if !strings.Contains(out.String(), "wrapped by vault") {
		t.Fatalf("read back %q", out.String())
	}
}

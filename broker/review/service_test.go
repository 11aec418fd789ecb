package review

import (
	"context"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/esign"
	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/broker/store/postgres"
	"github.com/custos-pam/custos/broker/store/sqlite"
	"github.com/custos-pam/custos/deploy/devstack"
)

// cheapHash is an argon2id PHC string with tiny parameters.
func cheapHash(pw string) string {
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte(pw), salt, 1, 64, 1, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=64,t=1,p=1$%s$%s", argon2.Version, b64.EncodeToString(salt), b64.EncodeToString(key))
}

var totpKey = []byte("review-test-totp-key")

const testConfig = `
auth: {max_failures: 3}
users:
  - {name: alice, password_hash: %[1]q}
  - {name: bob, password_hash: %[1]q}
  - {name: carol, password_hash: %[1]q}
  - {name: sam, password_hash: %[1]q}
  - {name: rita, display_name: Rita Q. Reviewer, email: rita@example.test, password_hash: %[1]q, totp_secret: %[2]q}
groups:
  - {name: dbas, members: [alice]}
  - {name: approvers, members: [bob]}
  - {name: security, members: [sam]}
  - {name: auditors, members: [rita]}
security_admins: [security]
reviews: {reviewers: [auditors]}
targets:
  - name: db
    kind: postgres
    address: 127.0.0.1:5432
    roles:
      - name: rw
        policy: {requesters: [dbas], approvers: [approvers], approvals: 1}
`

type fixture struct {
	svc  *Service
	st   broker.Store
	live *config.Live
	dir  *identity.Directory
	ids  *identity.Service
	yaml string
	now  time.Time
}

// stores are the state stores the service runs on: state documents in
// both drivers.
var stores = map[string]func(t *testing.T) broker.Store{
	"sqlite": func(t *testing.T) broker.Store {
		st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"))
		if err != nil {
			t.Fatal(err)
		}
		return st
	},
	"postgres": func(t *testing.T) broker.Store {
		pg := devstack.StartPostgres(t)
		st, err := postgres.Open(t.Context(), pg.DSN(pg.CreateDatabase(t, "reviews")))
		if err != nil {
			t.Fatal(err)
		}
		return st
	},
}

func TestMain(m *testing.M) { os.Exit(devstack.Main(m)) }

func newFixture(t *testing.T, open func(*testing.T) broker.Store) *fixture {
	t.Helper()
	f := &fixture{now: time.Now()}
	f.yaml = fmt.Sprintf(testConfig, cheapHash("pw"), base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(totpKey))
	cfg := f.parse(t, f.yaml)
	st := open(t)
	t.Cleanup(func() { st.Close() })
	f.st, f.live = st, config.NewLive(cfg)
	var err error
	if f.dir, err = identity.NewDirectory(cfg); err != nil {
		t.Fatal(err)
	}
	al := audit.NewLog(st)
	if f.ids, err = identity.NewService(identity.Options{Auth: cfg.Auth, Directory: f.dir, Store: st, Audit: al}); err != nil {
		t.Fatal(err)
	}
	if f.svc, err = New(Options{Config: f.live, Directory: f.dir, Store: st, Audit: al,
		Signer: esign.New(esign.Options{Config: f.live, Reauth: f.ids, Names: f.dir}), Now: func() time.Time { return f.now }}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) parse(t *testing.T, y string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// reload applies a changed config as SIGHUP does.
func (f *fixture) reload(t *testing.T, old, new string) {
	t.Helper()
	if !strings.Contains(f.yaml, old) {
		t.Fatalf("config lacks %q", old)
	}
	f.yaml = strings.Replace(f.yaml, old, new, 1)
	cfg := f.parse(t, f.yaml)
	if err := f.dir.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	f.live.Store(cfg)
}

// code is rita's TOTP code steps time steps from now: each use must be
// later than the last.
func code(steps int) string {
	return identity.TOTP(totpKey, time.Now().Add(time.Duration(steps)*30*time.Second))
}

func texts(r Review) []string {
	var out []string
	for _, l := range r.Lines {
		out = append(out, l.Text)
	}
	return out
}

func auditOf(t *testing.T, st broker.Store, prefix string) []broker.AuditRecord {
	t.Helper()
	var out []broker.AuditRecord
	if err := st.View(context.Background(), func(tx broker.Tx) error {
		var err error
		out, err = tx.ListAudit(broker.AuditFilter{ActionPrefix: prefix})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestReviewLifecycle(t *testing.T) {
	for name, open := range stores {
		t.Run(name, func(t *testing.T) { testReviewLifecycle(t, open) })
	}
}

func testReviewLifecycle(t *testing.T, open func(*testing.T) broker.Store) {
	ctx := context.Background()
	f := newFixture(t, open)
	if _, _, err := f.ids.Login(ctx, "alice", "pw", "", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := f.svc.Overdue(ctx); !ok {
		t.Fatal("no review attested yet, but not overdue")
	}

	// Only reviewers start; security admins who are not reviewers read.
	for _, u := range []string{"alice", "sam", "nobody"} {
		if _, err := f.svc.Start(ctx, u, ""); broker.CodeOf(err) != "forbidden" {
			t.Fatalf("start by %s: %v", u, err)
		}
	}
	r1, err := f.svc.Start(ctx, "rita", "Q3-2026")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(texts(r1), "\n")
	for _, want := range []string{"+ requester alice on db/rw (via dbas)", "+ approver bob on db/rw (via approvers)", "of alice (age 0d)"} {
		if !strings.Contains(got, want) {
			t.Errorf("first review lacks %q:\n%s", want, got)
		}
	}
	if _, err := f.svc.List(ctx, "sam"); err != nil {
		t.Errorf("security admin cannot read reviews: %v", err)
	}
	if _, err := f.svc.Start(ctx, "rita", ""); broker.CodeOf(err) != "review_open" {
		t.Fatalf("second open review: %v", err)
	}
	if _, err := f.svc.Mark(ctx, "rita", r1.ID, 1, VerdictFlag, " "); broker.CodeOf(err) != "comment_required" {
		t.Fatalf("flag without comment: %v", err)
	}
	if _, err := f.svc.Mark(ctx, "alice", r1.ID, 1, VerdictAttest, ""); broker.CodeOf(err) != "forbidden" {
		t.Fatalf("mark by a requester: %v", err)
	}
	if _, err := f.svc.Mark(ctx, "rita", r1.ID, 1, VerdictFlag, "check"); err != nil {
		t.Fatal(err)
	}
	l, err := f.svc.Mark(ctx, "rita", r1.ID, 1, VerdictAttest, "checked")
	if err != nil || len(l.Marks) != 1 || l.Marks[0].Verdict != VerdictAttest {
		t.Fatalf("a second mark by the same reviewer does not replace the first: %+v %v", l.Marks, err)
	}

	// Signing: the meaning must be configured, the password right.
	if _, err := f.svc.Attest(ctx, "rita", r1.ID, "looks fine", SignatureInput{Password: "pw", TOTP: code(-1)}); broker.CodeOf(err) != esign.CodeMeaningNotAllowed {
		t.Fatalf("unconfigured meaning: %v", err)
	}
	if _, err := f.svc.Attest(ctx, "rita", r1.ID, "reviewed, no concerns", SignatureInput{Password: "wrong", TOTP: "000000", Source: "192.0.2.9"}); broker.CodeOf(err) != identity.CodeReauthFailed {
		t.Fatalf("wrong password: %v", err)
	}
	if r, _ := f.svc.Get(ctx, "rita", r1.ID); r.State != StateOpen {
		t.Fatal("a wrong password attested the review")
	}
	if _, err := f.svc.Attest(ctx, "sam", r1.ID, "reviewed, no concerns", SignatureInput{Password: "pw"}); broker.CodeOf(err) != "forbidden" {
		t.Fatalf("attest by a non-reviewer: %v", err)
	}
	a1, err := f.svc.Attest(ctx, "rita", r1.ID, "reviewed, no concerns", SignatureInput{Password: "pw", TOTP: code(-1)})
	if err != nil {
		t.Fatal(err)
	}
	sig := a1.Attestation.Signature
	if sig.PrintedName != "Rita Q. Reviewer" || sig.Signer != "rita" || !strings.HasPrefix(sig.RecordHash, "sha256:") ||
		sig.Method != identity.MethodPasswordTOTP || sig.Meaning != "reviewed, no concerns" || sig.Time.Location() != time.UTC {
		t.Fatalf("signature: %+v", sig)
	}
	if _, err := f.svc.Mark(ctx, "rita", r1.ID, 1, VerdictFlag, "late"); broker.CodeOf(err) != "review_closed" {
		t.Fatalf("mark after attestation: %v", err)
	}
	if ok, _ := f.svc.Overdue(ctx); ok {
		t.Fatal("overdue right after an attestation")
	}
	f.now = f.now.Add(config.DefaultReviewEvery + time.Hour)
	if ok, _ := f.svc.Overdue(ctx); !ok {
		t.Fatal("not overdue a quarter after the last attestation")
	}

	// carol becomes an approver; alice's token has expired meanwhile.
	f.reload(t, "{name: approvers, members: [bob]}", "{name: approvers, members: [bob, carol]}")
	r2, err := f.svc.Start(ctx, "rita", "Q4-2026")
	if err != nil {
		t.Fatal(err)
	}
	if got := texts(r2); len(got) != 2 || got[0] != "+ approver carol on db/rw (via approvers)" || !strings.HasPrefix(got[1], "- token tok_") {
		t.Fatalf("review 2: %q", got)
	}
	if r2.PrevHash != r1.SnapshotHash || r2.Base != r1.ID {
		t.Fatalf("review 2 does not chain to review 1: base %s prev %s", r2.Base, r2.PrevHash)
	}
	if _, err := f.svc.Attest(ctx, "rita", r2.ID, "reviewed, concerns raised", SignatureInput{Password: "pw", TOTP: code(0)}); err != nil {
		t.Fatal(err)
	}
	recs := auditOf(t, f.st, "review.attest")
	last := recs[len(recs)-1]
	var d map[string]any
	_ = json.Unmarshal(last.Details, &d)
	if last.Outcome != broker.OutcomeSuccess || d["snapshot_hash"] != r2.SnapshotHash || d["meaning"] != "reviewed, concerns raised" ||
		d["printed_name"] != "Rita Q. Reviewer" || d["method"] != "password+totp" || d["time"] == nil {
		t.Fatalf("review.attest record: %s %s", last.Outcome, last.Details)
	}
	if n := len(auditOf(t, f.st, "auth.reauth")); n != 1 {
		t.Errorf("auth.reauth records: %d, want the one wrong password", n)
	}

	// Export verifies the chain, and finds a stored snapshot altered.
	ex, err := f.svc.Export(ctx, "sam", r2.ID)
	if err != nil || !ex.Verified || len(ex.Chain) != 2 {
		t.Fatalf("export: %+v %v", ex.Chain, err)
	}
	if err := f.st.Update(ctx, func(tx broker.Tx) error {
		r, err := loadReview(tx, r1.ID)
		if err != nil {
			return err
		}
		r.Snapshot = r.Snapshot[1:]
		return putJSON(tx, keyPrefix+r.ID, r)
	}); err != nil {
		t.Fatal(err)
	}
	if ex, _ := f.svc.Export(ctx, "sam", r2.ID); ex.Verified || !strings.Contains(ex.Problem, r1.ID) {
		t.Fatalf("an altered snapshot verified: %+v", ex)
	}
}

// Wrong passwords at signing count against sign-in: once
// auth.max_failures are spent, the right password signs in no more.
func TestSigningGuessesCountAgainstSignIn(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, stores["sqlite"])
	r, err := f.svc.Start(ctx, "rita", "")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := f.svc.Attest(ctx, "rita", r.ID, "reviewed, no concerns", SignatureInput{Password: "guess", TOTP: "000000", Source: "198.51.100.1"}); err == nil {
			t.Fatal("a guess signed")
		}
	}
	if _, _, err := f.ids.Login(ctx, "rita", "pw", code(0), "203.0.113.5"); identity.CodeOf(err) != identity.CodeTooManyAttempts {
		t.Fatalf("sign-in after 3 wrong signing passwords: %v, want too_many_attempts", err)
	}
	if _, err := f.svc.Attest(ctx, "rita", r.ID, "reviewed, no concerns", SignatureInput{Password: "pw", TOTP: code(1), Source: "203.0.113.5"}); identity.CodeOf(err) != identity.CodeTooManyAttempts {
		t.Fatalf("signing while blocked: %v", err)
	}
}

// markingSigner marks a line while the signer re-authenticates, as a
// second reviewer acting at that moment would.
type markingSigner struct {
	signer
	mark func()
}

func (m markingSigner) Sign(ctx context.Context, user string, rec esign.Record, in *esign.Input) (broker.Signature, error) {
	m.mark()
	return m.signer.Sign(ctx, user, rec, in)
}

// TestAttestSignsWhatWasReviewed: a mark made between the start of the
// signing and its storing changes what the signature covers: the
// attestation is refused (signature_mismatch) and the review stays open.
func TestAttestSignsWhatWasReviewed(t *testing.T) {
	f := newFixture(t, stores["sqlite"])
	ctx := t.Context()
	r, err := f.svc.Start(ctx, "rita", "Q4")
	if err != nil {
		t.Fatal(err)
	}
	f.svc.o.Signer = markingSigner{signer: f.svc.o.Signer, mark: func() {
		if _, err := f.svc.Mark(ctx, "rita", r.ID, 1, VerdictFlag, "slipped in"); err != nil {
			t.Errorf("mark: %v", err)
		}
	}}
	if _, err := f.svc.Attest(ctx, "rita", r.ID, "reviewed, no concerns", SignatureInput{Password: "pw", TOTP: code(0)}); broker.CodeOf(err) != esign.CodeSignatureMismatch {
		t.Fatalf("attestation over lines changed while signing: %v", err)
	}
	if got, _ := f.svc.Get(ctx, "rita", r.ID); got.State != StateOpen {
		t.Fatalf("review %s after a mismatched signature", got.State)
	}
}

package access_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/esign"
	"github.com/custos-pam/custos/broker/store/sqlite"
)

// fakeSigner signs what it is given, or (transplant) a signature made
// over another request, as a stolen one would be.
type fakeSigner struct {
	transplant bool
	calls      int
}

func (f *fakeSigner) Sign(_ context.Context, user string, rec esign.Record, in *esign.Input) (broker.Signature, error) {
	f.calls++
	if in == nil {
		return broker.Signature{}, broker.Refuse(broker.KindForbidden, esign.CodeSignatureRequired, "sign")
	}
	if f.transplant {
		rec.ObjectID = "req_other"
	}
	method := esign.MethodPasswordTOTP
	if len(in.Passkey) > 0 {
		method = esign.MethodPasskey
	}
	return broker.Signature{Signer: user, PrintedName: "Bob B.", SignedAt: time.Now().UTC(), Meaning: in.Meaning,
		Method: method, Action: rec.Action, ObjectID: rec.ObjectID, RecordHash: rec.Hash()}, nil
}

func signSetup(t *testing.T, sg *fakeSigner) (*access.Service, broker.Store) {
	return signSetupWith(t, sg, "")
}

func signSetupWith(t *testing.T, sg *fakeSigner, roles string) (*access.Service, broker.Store) {
	t.Helper()
	cfg, err := config.Parse([]byte(testConfig + `
      - name: admin
        policy: {requesters: [dbas], approvers: [approvers], approvals: 1, max_duration: 1h, signature: required}
` + roles))
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s := access.New(access.Options{Config: cfg, Store: st, Audit: audit.NewLog(st), Now: newClock().now})
	if sg != nil {
		s.SetSigner(sg)
	}
	return s, st
}

// TestDecideNeedsSignature: on a role with policy.signature: required an
// approval without a signature is refused (signature_required), also when
// the broker has no signer; a signature over another request is refused;
// a signed approval carries the signature on the vote and in the audit
// record; a refused vote (self-approval) never reaches the ceremony.
func TestDecideNeedsSignature(t *testing.T) {
	ctx := context.Background()
	newReq := func(s *access.Service) broker.Request {
		r, err := s.Create(ctx, "alice", access.NewRequest{Target: "db", Role: "admin", Duration: time.Hour, Reason: "INC-7"})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	s, _ := signSetup(t, nil)
	if _, _, err := s.Decide(ctx, "bob", newReq(s).ID, access.Decision{Approve: true, Via: "cli"}); code(err) != esign.CodeSignatureRequired {
		t.Fatalf("no signer: %v, want signature_required", err)
	}

	sg := &fakeSigner{}
	s, st := signSetup(t, sg)
	r := newReq(s)
	if _, _, err := s.Decide(ctx, "bob", r.ID, access.Decision{Approve: true, Via: "api"}); code(err) != esign.CodeSignatureRequired {
		t.Fatalf("unsigned approval: %v, want signature_required", err)
	}
	if _, _, err := s.Decide(ctx, "alice", r.ID, access.Decision{Approve: true, Sign: &esign.Input{Meaning: "m"}}); code(err) != "self_approval" {
		t.Fatalf("self approval: %v", err)
	}
	if sg.calls != 1 {
		t.Fatalf("ceremony ran %d times, want once (not for the refused self-approval)", sg.calls)
	}
	sg.transplant = true
	if _, _, err := s.Decide(ctx, "bob", r.ID, access.Decision{Approve: true, Sign: &esign.Input{Meaning: "m"}}); code(err) != esign.CodeSignatureMismatch {
		t.Fatalf("transplanted signature: %v, want signature_mismatch", err)
	}
	sg.transplant = false
	got, grant, err := s.Decide(ctx, "bob", r.ID, access.Decision{Approve: true, Via: "cli", Sign: &esign.Input{Meaning: "approved"}})
	if err != nil || grant == nil {
		t.Fatalf("signed approval: %v", err)
	}
	sig := got.Approvals[0].Signature
	if sig == nil || sig.Meaning != "approved" || sig.ObjectID != r.ID || sig.RecordHash != esign.RequestRecord("approve", r).Hash() {
		t.Fatalf("vote signature %+v", sig)
	}
	var recs []broker.AuditRecord
	_ = st.View(ctx, func(tx broker.Tx) error {
		recs, err = tx.ListAudit(broker.AuditFilter{ActionPrefix: "request.approve"})
		return err
	})
	last := recs[len(recs)-1]
	var details struct {
		Signature map[string]any `json:"signature"`
	}
	_ = json.Unmarshal(last.Details, &details)
	d := details.Signature
	if last.Outcome != broker.OutcomeSuccess || d["meaning"] != "approved" || d["printed_name"] != "Bob B." || d["method"] != "password+totp" || d["record_hash"] != sig.RecordHash {
		t.Fatalf("audit record %+v", last)
	}
}

// TestSignatureIsTheStepUp: on a role with both policy.signature and
// policy.step_up, the signature's re-authentication is the step-up it
// amounts to: a password-and-code signature meets totp but not passkey
// (refused before the ceremony), a passkey signature meets passkey.
func TestSignatureIsTheStepUp(t *testing.T) {
	ctx := context.Background()
	sg := &fakeSigner{}
	s, _ := signSetupWith(t, sg, `      - name: change
        policy: {requesters: [dbas], approvers: [approvers], approvals: 1, max_duration: 1h, signature: required, step_up: passkey}
      - name: report
        policy: {requesters: [dbas], approvers: [approvers], approvals: 1, max_duration: 1h, signature: required, step_up: totp}
`)
	newReq := func(role string) string {
		r, err := s.Create(ctx, "alice", access.NewRequest{Target: "db", Role: role, Duration: time.Hour, Reason: "CHG-1"})
		if err != nil {
			t.Fatal(err)
		}
		return r.ID
	}
	change := newReq("change")
	if _, _, err := s.Decide(ctx, "bob", change, access.Decision{Approve: true, Sign: &esign.Input{Meaning: "m", Password: "pw", TOTP: "123456"}}); code(err) != "step_up_required" {
		t.Fatalf("password-and-code signature where a passkey is required: %v", err)
	}
	if sg.calls != 0 {
		t.Fatalf("the ceremony ran for a signature that cannot meet the step-up")
	}
	if _, grant, err := s.Decide(ctx, "bob", change, access.Decision{Approve: true, Sign: &esign.Input{Meaning: "m", Passkey: []byte("assertion")}}); err != nil || grant == nil {
		t.Fatalf("passkey signature: %v", err)
	}
	if _, grant, err := s.Decide(ctx, "bob", newReq("report"), access.Decision{Approve: true, Sign: &esign.Input{Meaning: "m", Password: "pw", TOTP: "123456"}}); err != nil || grant == nil {
		t.Fatalf("password-and-code signature where totp is required: %v", err)
	}
}

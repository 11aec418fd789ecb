package esign

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
)

// reauth accepts one password and code, once each code.
type reauth struct{ used map[string]bool }

func (r *reauth) Reauthenticate(_ context.Context, user, pw, code, _ string) (string, error) {
	if pw != "pw" || code == "" || r.used[user+code] {
		return "", broker.Refuse(broker.KindForbidden, "reauth_failed", "wrong")
	}
	r.used[user+code] = true
	return MethodPasswordTOTP, nil
}

type printed map[string]string

func (p printed) PrintedName(u string) string { return p[u] }

type passkeys struct{ bound string }

func (p passkeys) VerifySignature(_ context.Context, user, action, objectID string, _ []byte) error {
	if user+"/"+action+"/"+objectID != p.bound {
		return errors.New("assertion bound to another action")
	}
	return nil
}

func newSigner() *Signer {
	cfg := &config.Config{Signatures: config.Signatures{Meanings: map[string][]string{
		"approve": {"approved for production change", "approved for investigation"},
	}}}
	return New(Options{Config: config.NewLive(cfg), Reauth: &reauth{used: map[string]bool{}},
		Names: printed{"bob": "Bob Builder"}, Now: func() time.Time { return time.Date(2026, 3, 1, 10, 0, 0, 5e8, time.UTC) }})
}

func req(id string) broker.Request {
	return broker.Request{ID: id, User: "alice", Target: "prod-db", Role: "rw", Duration: time.Hour, Reason: "INC-1"}
}

func TestSign(t *testing.T) {
	ctx := context.Background()
	for name, c := range map[string]struct {
		action string
		in     *Input
		code   string
	}{
		"no signature":               {"approve", nil, CodeSignatureRequired},
		"meaning not in the list":    {"approve", &Input{Meaning: "approved", Password: "pw", TOTP: "1"}, CodeMeaningNotAllowed},
		"no meaning, several listed": {"approve", &Input{Password: "pw", TOTP: "1"}, CodeMeaningNotAllowed},
		"review meaning on approve":  {"approve", &Input{Meaning: "reviewed, no concerns", Password: "pw", TOTP: "1"}, CodeMeaningNotAllowed},
		"wrong password":             {"approve", &Input{Meaning: "approved for investigation", Password: "x", TOTP: "1"}, "reauth_failed"},
		"passkey without verifier":   {"approve", &Input{Meaning: "approved for investigation", Passkey: []byte{1}}, CodePasskeyUnavailable},
		"default deny meaning":       {"deny", &Input{Password: "pw", TOTP: "2"}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			sig, err := newSigner().Sign(ctx, "bob", RequestRecord(c.action, req("req_1")), c.in)
			if e, _ := broker.AsError(err); (e == nil && c.code != "") || (e != nil && e.Code != c.code) {
				t.Fatalf("err = %v, want code %q", err, c.code)
			}
			if c.code == "" && (sig.Meaning != "denied" || sig.PrintedName != "Bob Builder" || sig.Method != MethodPasswordTOTP) {
				t.Fatalf("signature %+v", sig)
			}
		})
	}
}

// TestSignatureBinding: a signature shows name, UTC time, meaning and
// method, and is linked to the record: it does not check against another
// request, or against the same request with another reason or duration.
func TestSignatureBinding(t *testing.T) {
	s := newSigner()
	r := req("req_1")
	sig, err := s.Sign(context.Background(), "bob", RequestRecord("approve", r), &Input{Meaning: "approved for production change", Password: "pw", TOTP: "1"})
	if err != nil {
		t.Fatal(err)
	}
	want := broker.Signature{Signer: "bob", PrintedName: "Bob Builder", SignedAt: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC),
		Meaning: "approved for production change", Method: "password+totp", Action: "approve", ObjectID: "req_1", RecordHash: RequestRecord("approve", r).Hash()}
	if sig != want {
		t.Fatalf("signature\n%+v\nwant\n%+v", sig, want)
	}
	if err := Check(sig, RequestRecord("approve", r)); err != nil {
		t.Fatal(err)
	}
	other := r
	other.ID = "req_2"
	longer := r
	longer.Duration = 8 * time.Hour
	reason := r
	reason.Reason = "something else"
	for name, rec := range map[string]Record{
		"other request": RequestRecord("approve", other), "longer": RequestRecord("approve", longer),
		"other reason": RequestRecord("approve", reason), "a denial": RequestRecord("deny", r),
	} {
		if e, _ := broker.AsError(Check(sig, rec)); e == nil || e.Code != CodeSignatureMismatch {
			t.Errorf("%s: signature accepted", name)
		}
	}
	if got := sig.Manifestation(); got != `Signed by Bob Builder (bob) at 2026-03-01 10:00:00 UTC, meaning "approved for production change", re-authenticated by password+totp; approve of req_1, record `+want.RecordHash {
		t.Errorf("manifestation %q", got)
	}
}

// TestPasskeySigning: with a verifier, a passkey assertion bound to this
// user, action and object signs; one bound to another object does not.
func TestPasskeySigning(t *testing.T) {
	s := newSigner()
	s.SetPasskeys(passkeys{bound: "bob/approve/req_1"})
	in := &Input{Meaning: "approved for investigation", Passkey: []byte("assertion")}
	sig, err := s.Sign(context.Background(), "bob", RequestRecord("approve", req("req_1")), in)
	if err != nil || sig.Method != MethodPasskey {
		t.Fatalf("passkey signature %+v, %v", sig, err)
	}
	if _, err := s.Sign(context.Background(), "bob", RequestRecord("approve", req("req_2")), in); err == nil {
		t.Fatal("an assertion bound to req_1 signed req_2")
	}
}

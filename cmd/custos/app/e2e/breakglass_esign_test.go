package e2e_test

import (
	"encoding/json"
	"testing"

	"github.com/custos-pam/custos/broker/breakglass"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/esign"
	"github.com/custos-pam/custos/broker/identity"
)

// TestSignedUnsealConfirmation: with signatures.unseal: required a
// custodian's confirmation (the asker's included) is an electronic
// signature: without a listed
// meaning, or with a wrong password, it is refused and the account stays
// sealed; a signed confirmation opens it, and the confirmation and its
// audit record show the signer, UTC time, meaning and method, bound to
// the unseal.
func TestSignedUnsealConfirmation(t *testing.T) {
	meanings := []string{"emergency access confirmed", "emergency access confirmed for drill"}
	e := newEnv(t, envOptions{before: func(e *env) {
		e.cfg.Signatures = config.Signatures{Unseal: config.SignatureRequired, Meanings: map[string][]string{config.SignUnseal: meanings}}
	}})
	ids, err := identity.NewService(identity.Options{Auth: e.cfg.Auth, Directory: e.dir, Store: e.st, Audit: e.audit, Authenticator: e.auth, Log: e.log})
	if err != nil {
		t.Fatal(err)
	}
	e.svc.SetSigner(esign.New(esign.Options{Config: config.NewLive(e.cfg), Reauth: ids, Names: e.dir}))

	// Asking is the asker's confirmation: signed too.
	if _, err := e.svc.Unseal(e.ctx, "sam", breakglass.UnsealRequest{Account: "pg-admin", Reason: "primary down", Incident: "INC-9", Factor: e.factor("sam")}); code(t, err) != esign.CodeMeaningNotAllowed {
		t.Fatalf("unseal without a meaning: %v", err)
	}
	asked := e.factor("sam")
	asked.Meaning = meanings[0]
	u, err := e.svc.Unseal(e.ctx, "sam", breakglass.UnsealRequest{Account: "pg-admin", Reason: "primary down", Incident: "INC-9", Factor: asked})
	if err != nil {
		t.Fatal(err)
	}
	if s := u.Confirmations[0].Signature; s == nil || s.Signer != "sam" || s.Meaning != meanings[0] || s.ObjectID != u.ID {
		t.Fatalf("the asker's confirmation is not signed: %+v", s)
	}
	noMeaning := e.factor("carol")
	if _, err := e.svc.Confirm(e.ctx, "carol", u.ID, noMeaning); code(t, err) != esign.CodeMeaningNotAllowed {
		t.Fatalf("confirm without a meaning: %v", err)
	}
	other := e.factor("carol")
	other.Meaning = "sure, why not"
	if _, err := e.svc.Confirm(e.ctx, "carol", u.ID, other); code(t, err) != esign.CodeMeaningNotAllowed {
		t.Fatalf("unlisted meaning: %v", err)
	}
	wrong := e.factor("carol")
	wrong.Password, wrong.Meaning = "guess", meanings[0]
	if _, err := e.svc.Confirm(e.ctx, "carol", u.ID, wrong); code(t, err) != identity.CodeReauthFailed {
		t.Fatalf("wrong password: %v", err)
	}
	if st := e.status("pg-admin"); st.State == breakglass.StateOpen {
		t.Fatal("refused signatures opened the account")
	}
	good := e.factor("carol")
	good.Meaning = meanings[0]
	u, err = e.svc.Confirm(e.ctx, "carol", u.ID, good)
	if err != nil || u.Outcome != breakglass.UnsealOpened {
		t.Fatalf("signed confirmation: %+v %v", u, err)
	}
	sig := u.Confirmations[1].Signature
	if sig == nil || sig.Signer != "carol" || sig.PrintedName != "carol" || sig.Meaning != meanings[0] || sig.Method != "password+totp" ||
		sig.Action != "unseal" || sig.ObjectID != u.ID || sig.SignedAt.Location().String() != "UTC" || sig.SignedAt.IsZero() {
		t.Fatalf("confirmation signature %+v", sig)
	}
	recs := e.auditActions("breakglass.unseal.confirm")
	var details struct {
		Signature map[string]any `json:"signature"`
	}
	last := recs[len(recs)-1]
	if err := json.Unmarshal(last.Details, &details); err != nil || last.Outcome != "success" ||
		details.Signature["meaning"] != meanings[0] || details.Signature["method"] != "password+totp" || details.Signature["record_hash"] != sig.RecordHash {
		t.Fatalf("audit record %+v", last)
	}
}

package e2e_test

import (
	"testing"

	"github.com/custos-pam/custos/broker/breakglass"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/esign"
	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/broker/identity/passkeytest"
	"github.com/custos-pam/custos/broker/policy"
)

// passkeyEnv makes e's break-glass service check passkey step-ups with a
// step-up verifier over the state store, and registers a software passkey
// for each of users.
func passkeyEnv(t *testing.T, e *env, users ...string) (*identity.StepUp, map[string]*passkeytest.Authenticator) {
	t.Helper()
	pk, err := identity.NewPasskeys(e.cfg.Identity.WebAuthn, "", e.st, e.audit, nil)
	if err != nil {
		t.Fatal(err)
	}
	su := identity.NewStepUp(pk, e.dir, e.st, e.audit, nil, nil)
	e.svc.SetStepUp(su)
	keys := map[string]*passkeytest.Authenticator{}
	for _, u := range users {
		key := passkeytest.New("https://localhost", "localhost")
		opts, err := pk.BeginRegistration(e.ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		cred, err := key.Register(opts)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pk.FinishRegistration(e.ctx, u, u+"'s key", cred); err != nil {
			t.Fatal(err)
		}
		keys[u] = key
	}
	return su, keys
}

// assertFor begins a step-up for user on (action, object) and answers it
// with key.
func assertFor(t *testing.T, e *env, su *identity.StepUp, key *passkeytest.Authenticator, user, action, object string) []byte {
	t.Helper()
	opts, err := su.Begin(e.ctx, user, action, object)
	if err != nil {
		t.Fatal(err)
	}
	a, err := key.Assert(opts)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func withPasskey(f breakglass.Factor, assertion []byte) breakglass.Factor {
	f.Passkey = assertion
	return f
}

// TestBreakGlassStepUpPasskey: with identity.step_up.breakglass_confirm:
// passkey, asking for and confirming an unseal each need a fresh passkey
// assertion bound to it besides the password and code: without one, or
// with one begun for another object, the custodian is refused; the
// assertion is single-use (a replay after a wrong password is refused);
// the bound one opens the account, and the confirmation records it.
func TestBreakGlassStepUpPasskey(t *testing.T) {
	e := newEnv(t, envOptions{before: func(e *env) {
		e.cfg.Identity.StepUp.BreakGlassConfirm = config.StepUpPasskey
		e.cfg.Identity.WebAuthn = config.WebAuthn{RPID: "localhost", Origins: []string{"https://localhost"}}
	}})
	su, keys := passkeyEnv(t, e, "sam", "carol")
	ask := func(f breakglass.Factor) (breakglass.Unseal, error) {
		return e.svc.Unseal(e.ctx, "sam", breakglass.UnsealRequest{Account: "pg-admin", Reason: "primary down", Incident: "INC-11", Factor: f})
	}

	// Asking: no passkey; a passkey begun for confirming something else.
	if _, err := ask(e.factor("sam")); code(t, err) != policy.CodeStepUpRequired {
		t.Fatalf("ask without a passkey: %v", err)
	}
	other := assertFor(t, e, su, keys["sam"], "sam", identity.ActionBreakGlassConfirm, "pg-admin")
	if _, err := ask(withPasskey(e.factor("sam"), other)); code(t, err) != policy.CodeStepUpRequired {
		t.Fatalf("ask with a passkey begun for another action: %v", err)
	}
	u, err := ask(withPasskey(e.factor("sam"), assertFor(t, e, su, keys["sam"], "sam", identity.ActionBreakGlassUnseal, "pg-admin")))
	if err != nil {
		t.Fatalf("ask with a bound passkey: %v", err)
	}
	if f := u.Confirmations[0].SecondFactor; f != "password+totp+passkey" {
		t.Errorf("the asker's confirmation records %q", f)
	}

	// Confirming: no passkey; sam's ask assertion replayed; a wrong
	// password spends the assertion, so its replay is refused too.
	if _, err := e.svc.Confirm(e.ctx, "carol", u.ID, e.factor("carol")); code(t, err) != policy.CodeStepUpRequired {
		t.Fatalf("confirm without a passkey: %v", err)
	}
	bound := assertFor(t, e, su, keys["carol"], "carol", identity.ActionBreakGlassConfirm, u.ID)
	wrong := withPasskey(e.factor("carol"), bound)
	wrong.Password = "guess"
	if _, err := e.svc.Confirm(e.ctx, "carol", u.ID, wrong); code(t, err) != "second_factor_failed" {
		t.Fatalf("confirm with a wrong password: %v", err)
	}
	if _, err := e.svc.Confirm(e.ctx, "carol", u.ID, withPasskey(e.factor("carol"), bound)); code(t, err) != policy.CodeStepUpRequired {
		t.Fatalf("the same assertion replayed: %v", err)
	}
	if st := e.status("pg-admin"); st.State == breakglass.StateOpen {
		t.Fatal("refused confirmations opened the account")
	}
	u, err = e.svc.Confirm(e.ctx, "carol", u.ID, withPasskey(e.factor("carol"), assertFor(t, e, su, keys["carol"], "carol", identity.ActionBreakGlassConfirm, u.ID)))
	if err != nil || u.Outcome != breakglass.UnsealOpened {
		t.Fatalf("confirm with a bound passkey: %+v %v", u, err)
	}
	if f := u.Confirmations[1].SecondFactor; f != "password+totp+passkey" {
		t.Errorf("carol's confirmation records %q", f)
	}
	// Every step-up verdict is on the record: the ask, the assertion a
	// wrong password then wasted, the opening one; the two refused.
	var ok, denied int
	for _, r := range e.auditActions("auth.stepup") {
		if r.Outcome == "success" {
			ok++
		} else {
			denied++
		}
	}
	if ok != 3 || denied != 2 {
		t.Errorf("auth.stepup records: %d successes, %d refusals; want 3 and 2", ok, denied)
	}
}

// TestSignedUnsealWithPasskey: with signatures.unseal: required and the
// passkey step-up, a custodian signs with a passkey bound to the
// signature ("signature", "unseal:account/NAME" for the ask,
// "unseal:ID" for a confirmation): a password-and-code signature does
// not meet the step-up, a passkey begun for another unseal is refused, a
// bound one signs with method passkey.
func TestSignedUnsealWithPasskey(t *testing.T) {
	meaning := "emergency access confirmed"
	e := newEnv(t, envOptions{before: func(e *env) {
		e.cfg.Signatures = config.Signatures{Unseal: config.SignatureRequired}
		e.cfg.Identity.StepUp.BreakGlassConfirm = config.StepUpPasskey
		e.cfg.Identity.WebAuthn = config.WebAuthn{RPID: "localhost", Origins: []string{"https://localhost"}}
	}})
	su, keys := passkeyEnv(t, e, "sam", "carol")
	ids, err := identity.NewService(identity.Options{Auth: e.cfg.Auth, Directory: e.dir, Store: e.st, Audit: e.audit, Authenticator: e.auth, Log: e.log})
	if err != nil {
		t.Fatal(err)
	}
	sg := esign.New(esign.Options{Config: config.NewLive(e.cfg), Reauth: ids, Names: e.dir})
	sg.SetPasskeys(su)
	e.svc.SetSigner(sg)

	f := e.factor("sam")
	f.Meaning = meaning
	if _, err := e.svc.Unseal(e.ctx, "sam", breakglass.UnsealRequest{Account: "pg-admin", Reason: "primary down", Incident: "INC-12", Factor: f}); code(t, err) != policy.CodeStepUpRequired {
		t.Fatalf("a password-and-code signature where a passkey is required: %v", err)
	}
	f = withPasskey(breakglass.Factor{Meaning: meaning, Via: "cli"}, assertFor(t, e, su, keys["sam"], "sam", identity.ActionSign, "unseal:account/pg-admin"))
	u, err := e.svc.Unseal(e.ctx, "sam", breakglass.UnsealRequest{Account: "pg-admin", Reason: "primary down", Incident: "INC-12", Factor: f})
	if err != nil {
		t.Fatalf("ask signed with a passkey: %v", err)
	}
	if s := u.Confirmations[0].Signature; s == nil || s.Method != esign.MethodPasskey || s.ObjectID != u.ID {
		t.Fatalf("the asker's signature: %+v", s)
	}
	stray := assertFor(t, e, su, keys["carol"], "carol", identity.ActionSign, "unseal:bgu_another")
	if _, err := e.svc.Confirm(e.ctx, "carol", u.ID, withPasskey(breakglass.Factor{Meaning: meaning}, stray)); code(t, err) != policy.CodeStepUpRequired {
		t.Fatalf("a passkey begun for another unseal: %v", err)
	}
	bound := assertFor(t, e, su, keys["carol"], "carol", identity.ActionSign, "unseal:"+u.ID)
	u, err = e.svc.Confirm(e.ctx, "carol", u.ID, withPasskey(breakglass.Factor{Meaning: meaning}, bound))
	if err != nil || u.Outcome != breakglass.UnsealOpened {
		t.Fatalf("confirmation signed with a passkey: %+v %v", u, err)
	}
	if s := u.Confirmations[1].Signature; s == nil || s.Method != esign.MethodPasskey || s.Signer != "carol" || s.Meaning != meaning {
		t.Fatalf("carol's signature: %+v", s)
	}
}

package identity

import (
	"context"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/identity/passkeytest"
)

const (
	testOrigin = "https://localhost:8443"
	testRPID   = "localhost"
)

type stepUpEnv struct {
	st  *StepUp
	clk *clock
}

func newStepUpEnv(t *testing.T) stepUpEnv {
	t.Helper()
	cfg, _ := testConfig(t)
	d, err := NewDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := openStore(t)
	log := audit.NewLog(s)
	clk := newClock(time.Now())
	keys, err := NewPasskeys(config.WebAuthn{RPID: testRPID, Origins: []string{testOrigin}}, "", s, log, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	return stepUpEnv{st: NewStepUp(keys, d, s, log, &MemoryStepGuard{}, clk.Now), clk: clk}
}

// register gives user a passkey held by a software authenticator.
func (e stepUpEnv) register(t *testing.T, user string) *passkeytest.Authenticator {
	t.Helper()
	ctx := context.Background()
	a := passkeytest.New(testOrigin, testRPID)
	opts, err := e.st.keys.BeginRegistration(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := a.Register(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.keys.FinishRegistration(ctx, user, "laptop", cred); err != nil {
		t.Fatalf("register: %v", err)
	}
	return a
}

// TestStepUpBinding: an assertion is accepted only for the user, action
// and object its challenge was issued for, once, within two minutes, with
// user verification, from the relying party's origin.
func TestStepUpBinding(t *testing.T) {
	type call struct{ user, action, object string }
	issued := call{"alice", ActionApprove, "rq_1"}
	tests := []struct {
		name    string
		tamper  func(e stepUpEnv, a *passkeytest.Authenticator)
		present call
		ok      bool
		// unspent: the presentation could not reach the issuer's
		// challenge (another user's), so it stays usable once by them.
		unspent bool
	}{
		{name: "bound", present: issued, ok: true},
		{name: "another request", present: call{"alice", ActionApprove, "rq_2"}},
		{name: "another action", present: call{"alice", ActionTerminateSession, "rq_1"}},
		{name: "another user", present: call{"bob", ActionApprove, "rq_1"}, unspent: true},
		{name: "expired", tamper: func(e stepUpEnv, _ *passkeytest.Authenticator) { e.clk.Add(3 * time.Minute) }, present: issued},
		{name: "no user verification", tamper: func(_ stepUpEnv, a *passkeytest.Authenticator) { a.UserVerified = false }, present: issued},
		{name: "phishing origin", tamper: func(_ stepUpEnv, a *passkeytest.Authenticator) { a.Origin = "https://custos.evil.example" }, present: issued},
		{name: "other relying party", tamper: func(_ stepUpEnv, a *passkeytest.Authenticator) { a.RPID = "evil.example" }, present: issued},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			e := newStepUpEnv(t)
			a := e.register(t, "alice")
			e.register(t, "bob")
			opts, err := e.st.Begin(ctx, issued.user, issued.action, issued.object)
			if err != nil {
				t.Fatal(err)
			}
			if tc.tamper != nil {
				tc.tamper(e, a)
			}
			assertion, err := a.Assert(opts)
			if err != nil {
				t.Fatal(err)
			}
			p, err := e.st.Verify(ctx, tc.present.user, tc.present.action, tc.present.object, assertion)
			if tc.ok != (err == nil) {
				t.Fatalf("Verify = %+v, %v; want ok %v", p, err, tc.ok)
			}
			if err != nil && CodeOf(err) != CodeStepUp {
				t.Fatalf("refusal code %q, want %q (%v)", CodeOf(err), CodeStepUp, err)
			}
			if tc.ok && (p.Method != StepUpPasskey || p.ObjectID != issued.object || p.Action != issued.action || p.Credential != a.ID()) {
				t.Fatalf("proof %+v", p)
			}
			if tc.unspent {
				if _, err := e.st.Verify(ctx, issued.user, issued.action, issued.object, assertion); err != nil {
					t.Fatalf("issuer's own use: %v", err)
				}
			}
			// Whatever the outcome, the challenge is spent: the same
			// assertion is refused even where it was issued for.
			if _, err := e.st.Verify(ctx, issued.user, issued.action, issued.object, assertion); CodeOf(err) != CodeStepUp {
				t.Fatalf("replay: %v, want %s", err, CodeStepUp)
			}
		})
	}
}

// TestStepUpTOTP: the weaker factor is single-use and needs a secret.
func TestStepUpTOTP(t *testing.T) {
	ctx := context.Background()
	e := newStepUpEnv(t)
	code := TOTP(rfcKey, e.clk.Now())
	tests := []struct {
		name, user, code string
		ok               bool
	}{
		{"right code", "bob", code, true},
		{"same code again", "bob", code, false},
		{"wrong code", "bob", "000000", false},
		{"user without totp", "alice", code, false},
	}
	for _, tc := range tests {
		p, err := e.st.VerifyTOTP(ctx, tc.user, ActionApprove, "rq_1", tc.code)
		if tc.name == "wrong code" && err == nil {
			t.Fatal("a wrong code passed")
		}
		if tc.ok != (err == nil) || (err == nil && p.Method != StepUpTOTP) {
			t.Errorf("%s: %+v, %v", tc.name, p, err)
		}
		if err != nil && CodeOf(err) != CodeStepUp {
			t.Errorf("%s: code %q", tc.name, CodeOf(err))
		}
	}
}

// TestStepUpTOTPGuessesBounded: after five wrong codes even the right
// one is refused for a while, so a stolen session cannot guess codes
// through step-ups.
func TestStepUpTOTPGuessesBounded(t *testing.T) {
	ctx := context.Background()
	e := newStepUpEnv(t)
	for i := range 5 {
		if _, err := e.st.VerifyTOTP(ctx, "bob", ActionApprove, "rq_1", "000000"); CodeOf(err) != CodeStepUp {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	if _, err := e.st.VerifyTOTP(ctx, "bob", ActionApprove, "rq_1", TOTP(rfcKey, e.clk.Now())); CodeOf(err) != CodeTooManyAttempts {
		t.Fatalf("the right code after five wrong ones: %v, want %s", err, CodeTooManyAttempts)
	}
}

// TestPasskeyRegistration: a passkey registers only with user
// verification, for the pending challenge, and is listed and removed.
func TestPasskeyRegistration(t *testing.T) {
	ctx := context.Background()
	e := newStepUpEnv(t)
	if _, err := e.st.Begin(ctx, "alice", ActionApprove, "rq_1"); CodeOf(err) != CodeNoPasskey {
		t.Fatalf("step-up without a passkey: %v", err)
	}
	noUV := passkeytest.New(testOrigin, testRPID)
	noUV.UserVerified = false
	opts, _ := e.st.keys.BeginRegistration(ctx, "alice")
	cred, _ := noUV.Register(opts)
	if _, err := e.st.keys.FinishRegistration(ctx, "alice", "no-uv", cred); err == nil {
		t.Fatal("a passkey without user verification was registered")
	}
	// The challenge is spent with that answer: a good answer to the same
	// options is refused too.
	good, _ := passkeytest.New(testOrigin, testRPID).Register(opts)
	if _, err := e.st.keys.FinishRegistration(ctx, "alice", "again", good); err == nil {
		t.Fatal("a registration challenge was answered twice")
	}
	a := e.register(t, "alice")
	keys, err := e.st.keys.List(ctx, "alice")
	if err != nil || len(keys) != 1 || keys[0].ID != a.ID() || keys[0].Name != "laptop" || !keys[0].UserVerified {
		t.Fatalf("list: %+v, %v", keys, err)
	}
	if err := e.st.keys.Remove(ctx, "alice", a.ID()); err != nil {
		t.Fatal(err)
	}
	if keys, _ := e.st.keys.List(ctx, "alice"); len(keys) != 0 {
		t.Fatalf("after remove: %+v", keys)
	}
	var actions []string
	for _, r := range auditRecords(t, e.st.store, "auth.passkey.") {
		actions = append(actions, r.Action+":"+r.Outcome)
	}
	want := "[auth.passkey.register:denied auth.passkey.register:denied auth.passkey.register:success auth.passkey.remove:success]"
	if got := fmtList(actions); got != want {
		t.Fatalf("audit %s, want %s", got, want)
	}
}

func fmtList(s []string) string {
	out := "["
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out + "]"
}

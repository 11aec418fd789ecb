package identity

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/audit"
)

// TestTOTPEnrolment: alice (password only) enrols a TOTP secret through
// the otpauth flow; from then on a sign-in without a code fails, one with
// a code works, and step-ups may use it. bob, whose secret is in the
// config file, cannot enrol another.
func TestTOTPEnrolment(t *testing.T) {
	ctx := context.Background()
	cfg, _ := testConfig(t)
	d, err := NewDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := openStore(t)
	log := audit.NewLog(st)
	clk := newClock(time.Now())
	svc, err := NewService(Options{Auth: cfg.Auth, Directory: d, Store: st, Audit: log, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	en := StoreTOTP{Store: st, Audit: log, Dir: d, Now: clk.Now}

	if _, _, err := svc.Login(ctx, "alice", "alice-pw", "", "192.0.2.1"); err != nil {
		t.Fatalf("before enrolment a password is enough: %v", err)
	}
	if _, err := en.Begin(ctx, "bob"); err == nil {
		t.Fatal("bob enrolled a second secret besides the config file's")
	}
	e, err := en.Begin(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(e.URL)
	if err != nil || u.Scheme != "otpauth" || u.Host != "totp" || u.Query().Get("secret") != e.Secret || u.Query().Get("issuer") != "Custos" {
		t.Fatalf("otpauth url %q", e.URL)
	}
	if !strings.HasPrefix(e.QR, "data:image/png;base64,") {
		t.Fatalf("qr %.40q", e.QR)
	}
	key, err := ParseTOTPSecret(e.Secret)
	if err != nil {
		t.Fatal(err)
	}
	// Pending is not enrolled: sign-in still takes a password alone.
	if ok, _ := en.Enrolled(ctx, "alice"); ok {
		t.Fatal("enrolled before confirmation")
	}
	if err := en.Confirm(ctx, "alice", "000000"); err == nil {
		t.Fatal("a wrong code confirmed the enrolment")
	}
	code := TOTP(key, clk.Now())
	if err := en.Confirm(ctx, "alice", code); err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Login(ctx, "alice", "alice-pw", "", "192.0.2.1"); CodeOf(err) != CodeLoginFailed {
		t.Fatalf("after enrolment a password alone signed in: %v", err)
	}
	// The confirming code was claimed: it cannot sign in.
	if _, _, err := svc.Login(ctx, "alice", "alice-pw", code, "192.0.2.1"); CodeOf(err) != CodeLoginFailed {
		t.Fatalf("the confirming code signed in: %v", err)
	}
	clk.Add(30 * time.Second)
	_, tok, err := svc.Login(ctx, "alice", "alice-pw", TOTP(key, clk.Now()), "192.0.2.1")
	if err != nil || tok.AuthMethod != MethodPasswordTOTP {
		t.Fatalf("sign-in with the enrolled code: %+v, %v", tok, err)
	}
	clk.Add(30 * time.Second)
	su := NewStepUp(nil, d, st, log, nil, clk.Now)
	if p, err := su.VerifyTOTP(ctx, "alice", ActionApprove, "rq_1", TOTP(key, clk.Now())); err != nil || p.Method != StepUpTOTP {
		t.Fatalf("step-up with the enrolled code: %+v, %v", p, err)
	}
	if n := len(auditRecords(t, st, "auth.totp.enrol")); n != 1 {
		t.Fatalf("%d auth.totp.enrol records", n)
	}
}

package identity

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/deploy/devstack"
)

func TestMain(m *testing.M) { os.Exit(devstack.Main(m)) }

// realIDToken runs a code flow of clientID at the real provider as user
// with nonce, and returns the token response (with its id_token).
func realIDToken(t *testing.T, op *devstack.OIDC, clientID, user, nonce string) *oauth2.Token {
	t.Helper()
	ctx := t.Context()
	p, err := oidc.NewProvider(ctx, op.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	c := op.Client(clientID)
	const redirect = "http://127.0.0.1:1/cb"
	cfg := oauth2.Config{ClientID: c.ID, ClientSecret: c.Secret, Endpoint: p.Endpoint(), RedirectURL: redirect,
		Scopes: []string{oidc.ScopeOpenID, "profile", "email"}}
	verifier := oauth2.GenerateVerifier()
	code, _, err := op.Authorize(ctx, cfg.AuthCodeURL("st", oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)),
		user, op.User(user).Password, redirect)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func ssoFor(t *testing.T, op *devstack.OIDC) *OIDC {
	t.Helper()
	t.Setenv("CUSTOS_TEST_OIDC_SECRET", op.Client("custos").Secret)
	o, err := NewOIDC(config.OIDC{Issuer: op.Issuer, ClientID: "custos", ClientSecret: "env:CUSTOS_TEST_OIDC_SECRET",
		GroupMap: map[string]string{"dbas": "dbas"}}, "http://127.0.0.1:1/auth/oidc/callback", nil)
	if err != nil {
		t.Fatal(err)
	}
	o.useStore(openStore(t))
	return o
}

// The ID token check refuses, with real tokens from a real provider, a
// token whose nonce is another sign-in's (a replayed token), a token
// issued to another client of the same provider, and a token from a
// provider other than the configured issuer; the genuine token passes.
func TestIDTokenChecks(t *testing.T) {
	op := devstack.StartOIDC(t, devstack.OIDCOptions{})
	stranger := devstack.StartOIDC(t, devstack.OIDCOptions{Clients: op.Clients})
	o := ssoFor(t, op)
	p, err := o.discover(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	good := realIDToken(t, op, "custos", "alice", "nonce-1")
	u, err := o.verify(t.Context(), p, good, "nonce-1")
	if err != nil || u.Name != "alice" || len(u.Groups) != 1 || u.Groups[0] != "dbas" || u.Subject != "u-alice" {
		t.Fatalf("genuine token: %+v, %v", u, err)
	}

	cases := []struct {
		name, want string
		tok        *oauth2.Token
		nonce      string
	}{
		{"replayed into another sign-in (nonce)", "nonce", good, "nonce-2"},
		{"issued to another client (audience)", "audience", realIDToken(t, op, "other", "alice", "nonce-3"), "nonce-3"},
		{"from an unknown issuer (signed with keys the configured issuer never published)", "signature", realIDToken(t, stranger, "custos", "alice", "nonce-4"), "nonce-4"},
	}
	for _, c := range cases {
		_, err := o.verify(t.Context(), p, c.tok, c.nonce)
		e, ok := err.(*Error)
		if !ok || e.Code != CodeLoginFailed || !strings.Contains(e.Detail, c.want) {
			t.Errorf("%s: %v (%s), want login_failed about %s", c.name, err, e.Detail, c.want)
		}
	}

	// An expired token: the verifier's clock is moved past its expiry.
	o.now = func() time.Time { return time.Now().Add(time.Hour) }
	if _, err := o.verify(t.Context(), p, good, "nonce-1"); CodeOf(err) != CodeLoginFailed || !strings.Contains(err.(*Error).Detail, "expired") {
		t.Errorf("expired token: %v", err)
	}
}

// One address cannot fill the table of pending sign-ins: after
// maxFlowsPerSource it is refused, others are not. A state is single-use
// and bound to its purpose before the provider is asked.
func TestSignInFlows(t *testing.T) {
	op := devstack.StartOIDC(t, devstack.OIDCOptions{})
	o := ssoFor(t, op)
	from := func(addr string) context.Context { return audit.WithSource(t.Context(), addr) }
	for i := range maxFlowsPerSource {
		if _, _, err := o.Begin(from("192.0.2.1"), PurposeCLI, "http://127.0.0.1:5000/callback"); err != nil {
			t.Fatalf("sign-in %d: %v", i, err)
		}
	}
	if _, _, err := o.Begin(from("192.0.2.1"), PurposeWeb, ""); CodeOf(err) != CodeTooManyAttempts {
		t.Fatalf("one sign-in too many: %v", err)
	}
	_, state, err := o.Begin(from("192.0.2.2"), PurposeWeb, "")
	if err != nil {
		t.Fatalf("another address: %v", err)
	}
	if _, err := o.Finish(t.Context(), PurposeCLI, state, "code"); CodeOf(err) != CodeLoginFailed {
		t.Fatalf("web state finished as cli: %v", err)
	}
	// The mismatch consumed it.
	if _, err := o.Finish(t.Context(), PurposeWeb, state, "code"); CodeOf(err) != CodeLoginFailed || !strings.Contains(err.(*Error).Detail, "state") {
		t.Fatalf("state after a failed finish: %v", err)
	}
	for _, bad := range []string{"https://127.0.0.1:5000/cb", "http://192.0.2.7:5000/cb", "http://127.0.0.1/cb", "http://user@127.0.0.1:1/cb", "http://localhost.attacker.example:80/cb"} {
		if _, _, err := o.Begin(from("192.0.2.3"), PurposeCLI, bad); CodeOf(err) != CodeBadRequest {
			t.Errorf("redirect %s: %v", bad, err)
		}
	}
}

// A sign-in begun on one replica finishes on another sharing the store,
// once.
func TestSignInAcrossReplicas(t *testing.T) {
	op := devstack.StartOIDC(t, devstack.OIDCOptions{})
	a, b := ssoFor(t, op), ssoFor(t, op)
	b.flows = a.flows // one store
	const redirect = "http://127.0.0.1:5001/callback"
	authURL, state, err := a.Begin(t.Context(), PurposeCLI, redirect)
	if err != nil {
		t.Fatal(err)
	}
	code, _, err := op.Authorize(t.Context(), authURL, "bob", op.User("bob").Password, redirect)
	if err != nil {
		t.Fatal(err)
	}
	u, err := b.Finish(t.Context(), PurposeCLI, state, code)
	if err != nil || u.Name != "bob" {
		t.Fatalf("finish on the other replica: %+v, %v", u, err)
	}
	if _, err := a.Finish(t.Context(), PurposeCLI, state, code); CodeOf(err) != CodeLoginFailed {
		t.Fatalf("the same state on the first replica: %v", err)
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/custos-pam/custos/deploy/devstack"
)

// post sends a JSON body to the broker without credentials.
func post(t *testing.T, b *brokerProc, path string, in any) (int, map[string]any) {
	t.Helper()
	body, _ := json.Marshal(in)
	res, err := http.Post(b.url+path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(res.Body)
	_ = json.Unmarshal(raw, &out)
	return res.StatusCode, out
}

func errCode(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// The attacker's side of the CLI flow: what an intercepted code and
// state can and cannot do.
func TestSSOCodeFlowAttacks(t *testing.T) {
	op := devstack.StartOIDC(t, devstack.OIDCOptions{})
	b := newSSOBroker(t, op)
	const redirect = "http://127.0.0.1:9/callback"
	start := func() (string, string) {
		status, out := post(t, b, "/api/v1/auth/sso/start", map[string]string{"redirect_uri": redirect})
		if status != http.StatusOK {
			t.Fatalf("start: %d %v", status, out)
		}
		return out["auth_url"].(string), out["state"].(string)
	}
	authorize := func(authURL, user string) (string, string) {
		code, state, err := op.Authorize(t.Context(), authURL, user, op.User(user).Password, redirect)
		if err != nil || code == "" {
			t.Fatalf("authorize %s: %q %v", user, code, err)
		}
		return code, state
	}
	exchange := func(state, code string) (int, map[string]any) {
		return post(t, b, "/api/v1/auth/sso/token", map[string]string{"state": state, "code": code})
	}

	// Only loopback redirects: a code must never travel to another host.
	for _, bad := range []string{"https://attacker.example/cb", "http://10.0.0.1:8080/cb", "http://127.0.0.1/cb", "http://127.0.0.1:9/cb?x=1"} {
		if status, out := post(t, b, "/api/v1/auth/sso/start", map[string]string{"redirect_uri": bad}); status != http.StatusUnprocessableEntity {
			t.Errorf("redirect %s: %d %v", bad, status, out)
		}
	}

	// PKCE: alice's code, intercepted, redeemed under the attacker's own
	// flow (its state and verifier) is refused by the provider.
	authA, stateA := start()
	codeA, gotState := authorize(authA, "alice")
	if gotState != stateA {
		t.Fatalf("state came back as %q", gotState)
	}
	_, stateEvil := start()
	if status, out := exchange(stateEvil, codeA); status != http.StatusUnauthorized || errCode(out) != "login_failed" {
		t.Errorf("code under another flow's verifier: %d %v", status, out)
	}

	// A genuine flow works once: the state cannot be replayed, and the
	// code cannot be reused under a fresh state.
	authB, stateB := start()
	codeB, _ := authorize(authB, "alice")
	status, out := exchange(stateB, codeB)
	if status != http.StatusOK || out["user"] != "alice" || out["auth_method"] != "sso" {
		t.Fatalf("genuine exchange: %d %v\n%s", status, out, b.logs)
	}
	if status, out := exchange(stateB, codeB); status != http.StatusUnauthorized || errCode(out) != "login_failed" {
		t.Errorf("replayed state: %d %v", status, out)
	}
	// Refused by the broker itself, before the provider is asked.
	if n := strings.Count(b.logs.String(), "unknown, used or expired state"); n != 1 {
		t.Errorf("replayed state refused %d times for its state", n)
	}
	_, stateC := start()
	if status, out := exchange(stateC, codeB); status != http.StatusUnauthorized {
		t.Errorf("reused code: %d %v", status, out)
	}
	// A made-up state.
	if status, _ := exchange("forged-state", codeB); status != http.StatusUnauthorized {
		t.Errorf("forged state: %d", status)
	}
	// A state of a web flow cannot be finished by the CLI route.
	noFollow := devstack.NewBrowser()
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	res, err := noFollow.Get(b.url + "/auth/oidc/login")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	loc, err := res.Location()
	if err != nil {
		t.Fatalf("web login: %d, %v", res.StatusCode, err)
	}
	webState := loc.Query().Get("state")
	if status, _ := exchange(webState, codeB); status != http.StatusUnauthorized {
		t.Errorf("web state through the CLI route: %d", status)
	}
	if !strings.Contains(b.logs.String(), "sso sign-in refused") {
		t.Error("refusals not logged")
	}
}

// Web sign-in: the login page offers the provider; the browser goes
// there and back and holds a session cookie like a password sign-in's,
// with method sso. A code and state captured from one browser cannot be
// completed in another (login CSRF).
func TestSSOWebSignIn(t *testing.T) {
	op := devstack.StartOIDC(t, devstack.OIDCOptions{})
	b := newSSOBroker(t, op)

	res, err := http.Get(b.url + "/api/v1/auth/sso")
	if err != nil {
		t.Fatal(err)
	}
	var info map[string]any
	_ = json.NewDecoder(res.Body).Decode(&info)
	res.Body.Close()
	if info["enabled"] != true || info["name"] != "Sponsor IdP" {
		t.Fatalf("sso info: %v", info)
	}

	browser := devstack.NewBrowser()
	res, page, err := op.SignIn(t.Context(), browser, b.url+"/auth/oidc/login", "bob", op.User("bob").Password)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK || !strings.Contains(page, "signed in as bob") || res.Request.URL.Path != "/auth/oidc/callback" {
		t.Fatalf("callback: %d %s %.300s\n%s", res.StatusCode, res.Request.URL.Path, page, b.logs)
	}
	res, err = browser.Get(b.url + "/api/v1/whoami")
	if err != nil {
		t.Fatal(err)
	}
	var who map[string]any
	_ = json.NewDecoder(res.Body).Decode(&who)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || who["user"] != "bob" || who["via"] != "web" || who["auth_method"] != "sso" || who["csrf"] == nil {
		t.Fatalf("whoami with the session cookie: %d %v", res.StatusCode, who)
	}

	// Login CSRF: the attacker signs in as alice and stops at the
	// redirect back; the victim's browser is sent to that callback.
	code, state, err := op.Authorize(t.Context(), b.url+"/auth/oidc/login", "alice", op.User("alice").Password, b.url+"/auth/oidc/callback")
	if err != nil {
		t.Fatal(err)
	}
	victim := devstack.NewBrowser()
	res, err = victim.Get(b.url + "/auth/oidc/callback?state=" + state + "&code=" + code)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("callback in another browser: %d", res.StatusCode)
	}
	for _, c := range res.Cookies() {
		if c.Name == "custos_session" && c.Value != "" {
			t.Error("the victim got a session")
		}
	}

	// A provider error comes back as a page, not a session.
	res, err = browser.Get(b.url + "/auth/oidc/callback?error=access_denied&state=x")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("provider error: %d", res.StatusCode)
	}
}

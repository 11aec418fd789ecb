package webui_test

import (
	"encoding/json"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custos-pam/custos/web/ui/uitest"
)

func TestSignInCookieAttributes(t *testing.T) {
	env := uitest.Start(t)
	c := &client{t: t, env: env, http: env.Client()}
	st, _, hdr := c.raw("POST", "/api/v1/session", map[string]string{"user": "alice", "password": uitest.Password},
		map[string]string{"Origin": env.URL})
	if st != http.StatusOK {
		t.Fatalf("login: %d", st)
	}
	cookies := (&http.Response{Header: hdr}).Cookies()
	if len(cookies) != 1 {
		t.Fatalf("want one cookie, got %v", cookies)
	}
	ck := cookies[0]
	if !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" {
		t.Fatalf("session cookie must be HttpOnly, Secure, SameSite=Strict: %+v", ck)
	}
	// The browser holds a web token only: the API token Login issued is revoked.
	toks, err := env.Identity.ListTokens(t.Context(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) != 1 || toks[0].Kind != "web" {
		t.Fatalf("tokens after web sign-in: %+v", toks)
	}
	// The cookie's secret is not an API bearer token.
	if _, err := env.Identity.VerifyToken(t.Context(), ck.Value, "api"); err == nil {
		t.Fatal("web session secret works as an API token")
	}
}

func TestSignInNeedsSecondFactor(t *testing.T) {
	env := uitest.Start(t)
	c := &client{t: t, env: env, http: env.Client()}
	for _, tt := range []struct {
		name string
		body map[string]string
		want int
	}{
		{"no code", map[string]string{"user": "sam", "password": uitest.Password}, http.StatusUnauthorized},
		{"wrong code", map[string]string{"user": "sam", "password": uitest.Password, "totp": "000000"}, http.StatusUnauthorized},
		{"wrong password", map[string]string{"user": "alice", "password": "nope"}, http.StatusUnauthorized},
		{"code", map[string]string{"user": "sam", "password": uitest.Password, "totp": uitest.TOTP()}, http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, body, _ := c.raw("POST", "/api/v1/session", tt.body, map[string]string{"Origin": env.URL})
			if st != tt.want {
				t.Fatalf("status %d, want %d: %s", st, tt.want, body)
			}
		})
	}
	if recs := env.AuditRecords(t, "auth.login"); len(recs) < 4 {
		t.Fatalf("every sign-in attempt is audited: %d records", len(recs))
	}
}

func TestCSRFAndOriginOnStateChanges(t *testing.T) {
	env := uitest.Start(t)
	f := env.Seed(t, 0)
	bob := login(t, env, "bob")
	path := "/api/v1/requests/" + f.Pending.ID + "/deny"
	body := map[string]string{"comment": "no"}
	for _, tt := range []struct {
		name    string
		headers map[string]string
		want    int
	}{
		{"no token", map[string]string{"Origin": env.URL}, http.StatusForbidden},
		{"wrong token", map[string]string{"Origin": env.URL, "X-CSRF-Token": "forged"}, http.StatusForbidden},
		{"foreign origin", map[string]string{"Origin": "https://evil.example", "X-CSRF-Token": bob.csrf}, http.StatusForbidden},
		{"cross-site fetch", map[string]string{"Sec-Fetch-Site": "cross-site", "X-CSRF-Token": bob.csrf}, http.StatusForbidden},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if st, b, _ := bob.raw("POST", path, body, tt.headers); st != tt.want {
				t.Fatalf("status %d, want %d: %s", st, tt.want, b)
			}
		})
	}
	q, err := env.Access.GetRequest(t.Context(), f.Pending.ID)
	if err != nil || q.State != "pending" {
		t.Fatalf("refused state changes changed the request: %+v %v", q, err)
	}
	if st := bob.do("POST", path, body, nil); st != http.StatusOK {
		t.Fatalf("with token and origin: %d", st)
	}
}

func TestLogoutRevokesSession(t *testing.T) {
	env := uitest.Start(t)
	c := login(t, env, "alice")
	if st := c.do("GET", "/api/v1/whoami", nil, nil); st != http.StatusOK {
		t.Fatalf("me: %d", st)
	}
	u, _ := http.NewRequest("GET", env.URL, nil)
	secret := c.http.Jar.Cookies(u.URL)[0].Value
	if st := c.do("DELETE", "/api/v1/session", map[string]string{}, nil); st != http.StatusOK {
		t.Fatalf("logout: %d", st)
	}
	if st := c.do("GET", "/api/v1/whoami", nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("me after logout: %d", st)
	}
	if _, err := env.Identity.VerifyToken(t.Context(), secret, "web"); err == nil {
		t.Fatal("the session token still verifies after logout")
	}
	// Pages redirect to sign-in.
	st, _, hdr := c.raw("GET", "/ui/sessions", nil, nil)
	if st != http.StatusSeeOther || !strings.HasPrefix(hdr.Get("Location"), "/ui/login") {
		t.Fatalf("page without session: %d %s", st, hdr.Get("Location"))
	}
}

func TestSecurityHeaders(t *testing.T) {
	env := uitest.Start(t)
	c := login(t, env, "alice")
	for _, p := range []string{"/ui/login", "/ui/sessions", "/api/v1/whoami", "/ui/static/js/app.js"} {
		_, _, h := c.raw("GET", p, nil, nil)
		csp := h.Get("Content-Security-Policy")
		if csp == "" || strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") ||
			!strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: CSP %q", p, csp)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", p)
		}
	}
}

// TestAssetsNeverInterpretMarkup guards the rule that the pages set text
// only: no HTML sinks, no inline script or style in the shell.
func TestAssetsNeverInterpretMarkup(t *testing.T) {
	sinks := []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "srcdoc", "setAttribute('on", "javascript:"}
	err := filepath.WalkDir("static/js", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, s := range sinks {
			if strings.Contains(string(b), s) {
				t.Errorf("%s uses %s", path, s)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := os.ReadFile("templates/page.html")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(tpl), "<script>") || strings.Contains(string(tpl), "<style") || strings.Contains(string(tpl), " style=") {
		t.Error("page template has inline script or style")
	}
}

func TestApproveAndDenyFromTheWeb(t *testing.T) {
	env := uitest.Start(t)
	f := env.Seed(t, 0)
	alice, bob := login(t, env, "alice"), login(t, env, "bob")

	var pending []map[string]any
	bob.do("GET", "/api/v1/requests?view=pending", nil, &pending)
	if len(pending) != 1 || pending[0]["id"] != f.Pending.ID || pending[0]["can_decide"] != true {
		t.Fatalf("bob's pending: %v", pending)
	}
	// The requester never approves her own request.
	if st := alice.do("POST", "/api/v1/requests/"+f.Pending.ID+"/approve", map[string]string{}, nil); st < 400 {
		t.Fatalf("self-approval: %d", st)
	}
	// A denial needs a reason.
	if st := bob.do("POST", "/api/v1/requests/"+f.Pending.ID+"/deny", map[string]string{}, nil); st != http.StatusBadRequest {
		t.Fatalf("deny without reason: %d", st)
	}
	var res struct {
		Grant *struct {
			ID string `json:"id"`
		} `json:"grant"`
	}
	if st := bob.do("POST", "/api/v1/requests/"+f.Pending.ID+"/approve", map[string]string{"comment": "looks fine"}, &res); st != http.StatusOK || res.Grant == nil {
		t.Fatalf("approve: %d %+v", st, res)
	}
	var approved bool
	for _, r := range env.AuditRecords(t, "request.approve") {
		var d map[string]any
		_ = json.Unmarshal(r.Details, &d)
		if r.Actor == "bob" && d["request_id"] == f.Pending.ID && d["via"] == "web" {
			approved = true
		}
	}
	if !approved {
		t.Fatal("no audit record of bob's web approval")
	}
	// Alice sees the grant and can revoke it with a reason.
	if st := alice.do("POST", "/api/v1/grants/"+res.Grant.ID+"/revoke", map[string]string{}, nil); st != http.StatusBadRequest {
		t.Fatalf("revoke without reason: %d", st)
	}
	var g map[string]any
	if st := alice.do("POST", "/api/v1/grants/"+res.Grant.ID+"/revoke", map[string]string{"reason": "done early"}, &g); st != http.StatusOK || g["state"] != "revoked" {
		t.Fatalf("revoke: %d %v", st, g)
	}
	// Creating a request from the form.
	var created map[string]any
	if st := alice.do("POST", "/api/v1/requests", map[string]string{"target": "demo-pg", "role": "readonly", "duration": "30m", "reason": "INC-9"}, &created); st != http.StatusCreated || created["state"] != "pending" {
		t.Fatalf("create: %d %v", st, created)
	}
}

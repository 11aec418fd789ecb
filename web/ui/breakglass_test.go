package webui_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/breakglass"
	webui "github.com/custos-pam/custos/web/ui"
	"github.com/custos-pam/custos/web/ui/uitest"
)

// bgList is GET /api/v1/breakglass.
type bgList struct {
	Accounts []struct {
		breakglass.AccountView
		TOTPRequired bool                    `json:"totp_required"`
		Drills       *breakglass.DrillStatus `json:"drills"`
	} `json:"accounts"`
	Overdue []string `json:"overdue"`
}

func (c *client) breakGlass() bgList {
	c.t.Helper()
	var out bgList
	if st := c.do("GET", "/api/v1/breakglass", nil, &out); st != http.StatusOK {
		c.t.Fatalf("%s: list break-glass: status %d", c.user, st)
	}
	return out
}

func (l bgList) state(name string) breakglass.State {
	for _, a := range l.Accounts {
		if a.Name == name {
			return a.State
		}
	}
	return ""
}

// apiError decodes an error answer's code.
func apiError(t testing.TB, b []byte) string {
	t.Helper()
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("error answer %q: %v", b, err)
	}
	return e.Error.Code
}

// post sends a same-origin state change with the client's CSRF token and
// returns the status and the error code, if any.
func (c *client) post(path string, body any) (int, string, []byte) {
	c.t.Helper()
	st, b, _ := c.raw("POST", path, body, map[string]string{"X-CSRF-Token": c.csrf, "Origin": c.env.URL})
	if st >= 300 {
		return st, apiError(c.t, b), b
	}
	return st, "", b
}

func TestBreakGlassPageAndNav(t *testing.T) {
	env := uitest.Start(t)
	erin := login(t, env, "erin")
	for _, path := range []string{"/ui/breakglass", webui.UnsealPath("bgu_123")} {
		anon := &client{t: t, env: env, http: env.Client()}
		if st, _, h := anon.raw("GET", path, nil, nil); st != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/ui/login") {
			t.Errorf("%s without sign-in: %d to %q", path, st, h.Get("Location"))
		}
		st, body, h := erin.raw("GET", path, nil, nil)
		if st != http.StatusOK || !strings.Contains(string(body), `data-page="breakglass"`) {
			t.Errorf("%s: status %d, page %q", path, st, body)
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s: CSP %q", path, csp)
		}
		if !strings.Contains(string(body), `href="/ui/breakglass" data-nav="breakglass" data-breakglass hidden`) {
			t.Errorf("%s: no break-glass link in the nav", path)
		}
	}
	// The nav shows the page to custodians and security admins only.
	for user, want := range map[string]bool{"erin": true, "sam": true, "alice": false, "bob": false} {
		var me struct {
			BreakGlass bool `json:"breakglass"`
		}
		c := erin
		if user != "erin" {
			c = login(t, env, user)
		}
		c.do("GET", "/api/v1/whoami", nil, &me)
		if me.BreakGlass != want {
			t.Errorf("me of %s: breakglass %v, want %v", user, me.BreakGlass, want)
		}
	}
	// The script exists and sets text only.
	st, js, _ := erin.raw("GET", "/ui/static/js/breakglass.js", nil, nil)
	if st != http.StatusOK || !strings.Contains(string(js), "/api/v1/breakglass") {
		t.Fatalf("breakglass.js: status %d", st)
	}
}

func TestBreakGlassListsAccountsAndOverdueDrills(t *testing.T) {
	env := uitest.Start(t)
	erin := login(t, env, "erin")
	l := erin.breakGlass()
	if len(l.Accounts) != 2 {
		t.Fatalf("erin sees %d accounts, want 2", len(l.Accounts))
	}
	now := time.Now()
	for _, a := range l.Accounts {
		if a.State != breakglass.StateSealed || a.Required != 2 || !a.TOTPRequired || a.Drills == nil || a.Drill.NextDue.IsZero() {
			t.Errorf("account %+v", a)
		}
		switch a.Name {
		case "ssh-root":
			// First seen two hours ago with an hourly drill: overdue.
			if !a.Drill.Overdue || !a.Drill.NextDue.Before(now) {
				t.Errorf("ssh-root drill %+v, want overdue", a.Drill)
			}
		case "pg-admin":
			if a.Drill.Overdue != now.After(a.Drill.NextDue) {
				t.Errorf("pg-admin drill %+v", a.Drill)
			}
		}
	}
	if !slices.Contains(l.Overdue, "ssh-root") {
		t.Errorf("overdue = %v, want ssh-root", l.Overdue)
	}
	// A security admin sees every account; others none.
	if n := len(login(t, env, "sam").breakGlass().Accounts); n != 2 {
		t.Errorf("sam sees %d accounts", n)
	}
	if l := login(t, env, "alice").breakGlass(); len(l.Accounts) != 0 || len(l.Overdue) != 0 {
		t.Errorf("alice sees %+v", l)
	}
}

// Unseal, confirm and close from the web: the same service and rules as
// the API and the CLI, a fresh second factor for every confirmation, the
// UI's CSRF and origin checks on every step.
func TestBreakGlassUnsealConfirmClose(t *testing.T) {
	env := uitest.Start(t)
	erin, frank, sam, alice := login(t, env, "erin"), login(t, env, "frank"), login(t, env, "sam"), login(t, env, "alice")
	unseal := "/api/v1/breakglass/ssh-root/unseal"
	body := map[string]string{"reason": "root shell needed: sshd config broken", "incident": "INC-77",
		"password": uitest.Password, "totp": uitest.FreshCode("erin")}

	// CSRF and origin are enforced; nothing happens without them.
	if st, b, _ := erin.raw("POST", unseal, body, map[string]string{"Origin": env.URL}); st != http.StatusForbidden || apiError(t, b) != "csrf" {
		t.Errorf("unseal without CSRF token: %d %s", st, b)
	}
	if st, b, _ := erin.raw("POST", unseal, body, map[string]string{"X-CSRF-Token": erin.csrf, "Origin": "https://evil.example"}); st != http.StatusForbidden || apiError(t, b) != "bad_origin" {
		t.Errorf("unseal from another origin: %d %s", st, b)
	}
	if s := erin.breakGlass().state("ssh-root"); s != breakglass.StateSealed {
		t.Fatalf("after refused requests ssh-root is %s", s)
	}

	// The requester's own confirmation needs the second factor too.
	noCode := map[string]string{"reason": body["reason"], "incident": body["incident"], "password": uitest.Password}
	if st, code, _ := erin.post(unseal, noCode); st != http.StatusUnauthorized || code != "second_factor_required" {
		t.Errorf("unseal without a code: %d %s", st, code)
	}
	st, code, b := erin.post(unseal, body)
	if st != http.StatusCreated {
		t.Fatalf("unseal: %d %s %s", st, code, b)
	}
	var u breakglass.Unseal
	if err := json.Unmarshal(b, &u); err != nil {
		t.Fatal(err)
	}
	if u.Outcome != breakglass.UnsealPending || len(u.Confirmations) != 1 || u.Confirmations[0].Via != "web" || u.Incident != "INC-77" {
		t.Fatalf("unseal = %+v", u)
	}
	// Slack gets the hand-off to the web UI, not a bare text.
	if got := env.Notices.Unseals(); !slices.Equal(got, []string{u.ID}) {
		t.Errorf("unseals handed off = %v, want [%s]", got, u.ID)
	}
	l := erin.breakGlass()
	if l.state("ssh-root") != breakglass.StateUnsealRequested {
		t.Fatalf("ssh-root is %s", l.state("ssh-root"))
	}

	confirm := "/api/v1/breakglass/unseals/" + u.ID + "/confirm"
	// A security admin who is no custodian is refused by the service.
	if st, code, _ := sam.post(confirm, map[string]string{"password": uitest.Password, "totp": uitest.FreshCode("sam")}); st != http.StatusForbidden || code != "not_custodian" {
		t.Errorf("sam confirms: %d %s", st, code)
	}
	if st, code, _ := alice.post(confirm, map[string]string{"password": uitest.Password}); st != http.StatusForbidden || code != "not_custodian" {
		t.Errorf("alice confirms: %d %s", st, code)
	}
	// A custodian without a fresh second factor is refused.
	for _, c := range []struct {
		name string
		body map[string]string
		code string
	}{
		{"no factor", map[string]string{}, "second_factor_required"},
		{"password only", map[string]string{"password": uitest.Password}, "second_factor_required"},
		{"wrong password", map[string]string{"password": "wrong", "totp": uitest.FreshCode("frank")}, "second_factor_failed"},
		{"the sign-in's code again", map[string]string{"password": uitest.Password, "totp": frank.code}, "second_factor_failed"},
	} {
		if st, code, _ := frank.post(confirm, c.body); st != http.StatusUnauthorized || code != c.code {
			t.Errorf("confirm with %s: %d %s, want 401 %s", c.name, st, code, c.code)
		}
	}
	// The requester cannot count twice.
	if st, code, _ := erin.post(confirm, map[string]string{"password": uitest.Password, "totp": uitest.FreshCode("erin")}); st != http.StatusConflict || code != "already_confirmed" {
		t.Errorf("erin confirms her own unseal: %d %s", st, code)
	}
	if s := frank.breakGlass().state("ssh-root"); s != breakglass.StateUnsealRequested {
		t.Fatalf("after refused confirmations ssh-root is %s", s)
	}

	st, code, b = frank.post(confirm, map[string]string{"password": uitest.Password, "totp": uitest.FreshCode("frank")})
	if st != http.StatusOK {
		t.Fatalf("frank confirms: %d %s %s", st, code, b)
	}
	if err := json.Unmarshal(b, &u); err != nil {
		t.Fatal(err)
	}
	if u.Outcome != breakglass.UnsealOpened || len(u.Confirmations) != 2 || u.Confirmations[1].Custodian != "frank" ||
		u.Confirmations[1].Via != "web" || u.Confirmations[1].SecondFactor != "password+totp" || u.GrantID == "" {
		t.Fatalf("after frank's confirmation: %+v", u)
	}
	if l := frank.breakGlass(); l.state("ssh-root") != breakglass.StateOpen {
		t.Fatalf("ssh-root is %s after two confirmations", l.state("ssh-root"))
	}

	// Closing: not for other users; a custodian closes and it reseals.
	if st, code, _ := alice.post("/api/v1/breakglass/ssh-root/close", map[string]string{"reason": "x"}); st != http.StatusForbidden || code != "forbidden" {
		t.Errorf("alice closes: %d %s", st, code)
	}
	st, code, b = frank.post("/api/v1/breakglass/ssh-root/close", map[string]string{"reason": "fixed"})
	if st != http.StatusOK {
		t.Fatalf("close: %d %s %s", st, code, b)
	}
	if l := erin.breakGlass(); l.state("ssh-root") != breakglass.StateSealed {
		t.Errorf("ssh-root is %s after close", l.state("ssh-root"))
	}

	// Every step is on the audit record, as coming from the web.
	var confirmed, refused bool
	for _, r := range env.AuditRecords(t, "breakglass.unseal.confirm") {
		switch {
		case r.Actor == "frank" && r.Outcome == "success":
			confirmed = true
		case r.Actor == "sam" && r.Outcome == "denied":
			refused = true
		}
	}
	if !confirmed || !refused {
		t.Errorf("audit: frank's confirmation %v, sam's refusal %v", confirmed, refused)
	}
}

// A rotation that fails at close leaves the account flagged
// compromised-until-rotated, with the cause, for the page to show.
func TestBreakGlassCompromisedAfterFailedRotation(t *testing.T) {
	env := uitest.Start(t)
	erin, frank := login(t, env, "erin"), login(t, env, "frank")
	st, code, b := erin.post("/api/v1/breakglass/pg-admin/unseal", map[string]string{"reason": "primary down", "incident": "INC-9",
		"password": uitest.Password, "totp": uitest.FreshCode("erin")})
	if st != http.StatusCreated {
		t.Fatalf("unseal: %d %s", st, code)
	}
	var u breakglass.Unseal
	if err := json.Unmarshal(b, &u); err != nil {
		t.Fatal(err)
	}
	if st, code, _ := frank.post("/api/v1/breakglass/unseals/"+u.ID+"/confirm", map[string]string{"password": uitest.Password,
		"totp": uitest.FreshCode("frank")}); st != http.StatusOK {
		t.Fatalf("confirm: %d %s", st, code)
	}
	// The UI env has no Vault: the rotation at close fails.
	if st, code, _ := frank.post("/api/v1/breakglass/pg-admin/close", map[string]string{"reason": "done"}); st != http.StatusOK {
		t.Fatalf("close: %d %s", st, code)
	}
	for _, a := range erin.breakGlass().Accounts {
		if a.Name != "pg-admin" {
			continue
		}
		if a.State != breakglass.StateCompromised || a.CompromisedSince.IsZero() || !strings.Contains(a.LastRotationError, "no vault") ||
			a.LastUnseal == nil || a.LastUnseal.ID != u.ID || a.LastUnseal.ClosedBy != "frank" {
			t.Errorf("pg-admin after a failed rotation: %+v", a.AccountView)
		}
	}
}

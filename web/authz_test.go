package web_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/share"
	"github.com/custos-pam/custos/web"
	"github.com/custos-pam/custos/web/ui/uitest"
)

// The roles of the authorization table, and the user who plays each.
const (
	anon      = "anonymous"
	requester = "requester" // alice (dbas): holds the seeded grants
	approver  = "approver"  // bob (approvers): approved alice's grants
	security  = "security"  // sam (security_admins)
	custodian = "custodian" // erin: break-glass custodian, no other role
)

var roles = []string{anon, requester, approver, security, custodian}

var playedBy = map[string]string{requester: "alice", approver: "bob", security: "sam", custodian: "erin"}

// want is the status each role gets; a role left out gets other.
type want struct {
	other int
	by    map[string]int
}

func (w want) of(role string) int {
	if s, ok := w.by[role]; ok {
		return s
	}
	return w.other
}

// only: the listed roles get ok, the other signed-in roles denied and
// anonymous 401.
func only(ok, denied int, allowed ...string) want {
	w := want{other: denied, by: map[string]int{anon: http.StatusUnauthorized}}
	for _, r := range allowed {
		w.by[r] = ok
	}
	return w
}

// everyone: every signed-in role gets ok, anonymous 401.
func everyone(ok int) want { return want{other: ok, by: map[string]int{anon: http.StatusUnauthorized}} }

// row is one request of the table: path builds it (it may create what the
// request acts on, afresh for every role), body is sent as JSON.
type row struct {
	path func(t *testing.T, x *authzEnv) string
	body any
	want want
	// ws dials a websocket; the status of an accepted upgrade is 101.
	ws bool
	// page rows are browser pages: only the cookie session applies.
	page bool
}

func fixed(p string) func(*testing.T, *authzEnv) string {
	return func(*testing.T, *authzEnv) string { return p }
}

type authzEnv struct {
	env *uitest.Env
	f   uitest.Fixtures
	n   atomic.Int64
	// live is a running session of alice's grant.
	live string
}

// share creates a share link of one of sam's sessions and returns it
// with its token.
func (x *authzEnv) share(t *testing.T) (share.Link, string) {
	svc := &share.Service{Store: x.env.State, Audit: x.env.Audit}
	l, token, err := svc.Create(t.Context(), "sam", share.NewLink{Kind: share.KindSession, SessionID: x.f.SSH, Target: "demo-ssh", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return l, token
}

func (x *authzEnv) id(prefix string) string { return fmt.Sprintf("%s_%d", prefix, x.n.Add(1)) }

// pending creates a pending request by user on demo-ssh/ops.
func (x *authzEnv) pending(t *testing.T, user string) string {
	r, err := x.env.Access.Create(t.Context(), user, access.NewRequest{Target: "demo-ssh", Role: "ops", Duration: time.Hour,
		Reason: "INC-42 authz table"})
	if err != nil {
		t.Fatal(err)
	}
	return r.ID
}

// table lists every route the broker serves. TestAuthorizationTable fails
// when a route is served without a row here.
func table() map[string][]row {
	const (
		ok, created, redirect, switching = http.StatusOK, http.StatusCreated, http.StatusSeeOther, http.StatusSwitchingProtocols
		unauth, forbidden, notFound      = http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound
		conflict, invalid                = http.StatusConflict, http.StatusUnprocessableEntity
	)
	all := func(s int) want { return want{other: s} }
	page := func(p string) []row {
		return []row{{path: fixed(p), page: true, want: want{other: ok, by: map[string]int{anon: redirect}}}}
	}
	seen := []string{requester, approver, security}
	pubKey := func() string {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		sp, _ := ssh.NewPublicKey(pub)
		return string(ssh.MarshalAuthorizedKey(sp))
	}()
	return map[string][]row{
		"GET /healthz": {{path: fixed("/healthz"), want: all(ok)}},
		"GET /readyz":  {{path: fixed("/readyz"), want: all(ok)}},
		"GET /metrics": {{path: fixed("/metrics"), want: all(ok)}},

		"GET /api/v1/openapi.json": {{path: fixed("/api/v1/openapi.json"), want: all(ok)}},

		"POST /api/v1/login":   {{path: fixed("/api/v1/login"), body: map[string]string{"user": "alice", "password": "wrong"}, want: all(unauth)}},
		"POST /api/v1/session": {{path: fixed("/api/v1/session"), body: map[string]string{"user": "alice", "password": "wrong"}, want: all(unauth)}},
		// Signing out revokes the caller's own session or token: the
		// table signs in afresh for it.
		"DELETE /api/v1/session": {{path: fixed("/api/v1/session"), want: everyone(ok)}},
		"GET /api/v1/whoami":     {{path: fixed("/api/v1/whoami"), want: everyone(ok)}},
		"GET /api/v1/tokens":     {{path: fixed("/api/v1/tokens"), want: everyone(ok)}},
		// One's own tokens, and security may revoke anyone's.
		"DELETE /api/v1/tokens/{id}": {{path: func(t *testing.T, x *authzEnv) string {
			_, tok, err := x.env.Identity.Tokens().Issue(t.Context(), "alice", "api", "", time.Hour, "127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			return "/api/v1/tokens/" + tok.ID
		}, want: only(ok, notFound, requester, security)}},
		"GET /api/v1/targets":             {{path: fixed("/api/v1/targets"), want: everyone(ok)}},
		"GET /api/v1/signatures/meanings": {{path: fixed("/api/v1/signatures/meanings"), want: everyone(ok)}},

		// Single sign-on: open to anyone (it is how one signs in). This
		// broker has no provider: the routes answer sso_disabled; the
		// flows themselves are tested against a real provider in
		// cmd/custos (TestSSO*).
		"GET /api/v1/auth/sso":               {{path: fixed("/api/v1/auth/sso"), want: all(ok)}},
		"POST /api/v1/auth/sso/start":        {{path: fixed("/api/v1/auth/sso/start"), body: map[string]string{"redirect_uri": "http://127.0.0.1:5555/callback"}, want: all(notFound)}},
		"POST /api/v1/auth/sso/token":        {{path: fixed("/api/v1/auth/sso/token"), body: map[string]string{"state": "x", "code": "y"}, want: all(notFound)}},
		"POST /api/v1/auth/sso/device":       {{path: fixed("/api/v1/auth/sso/device"), want: all(notFound)}},
		"POST /api/v1/auth/sso/device/token": {{path: fixed("/api/v1/auth/sso/device/token"), body: map[string]string{"handle": "x"}, want: all(notFound)}},
		"GET /auth/oidc/login":               {{path: fixed("/auth/oidc/login"), want: all(notFound)}},
		"GET /auth/oidc/callback":            {{path: fixed("/auth/oidc/callback?state=x&code=y"), want: all(notFound)}},

		// Passkeys are the caller's own; removing one needs a step-up,
		// and a step-up needs a registered passkey.
		"GET /api/v1/passkeys": {{path: fixed("/api/v1/passkeys"), want: everyone(ok)}},
		// Adding a factor needs a fresh sign-in; the table's tokens carry
		// none.
		"POST /api/v1/passkeys/begin": {{path: fixed("/api/v1/passkeys/begin"), want: everyone(forbidden)}},
		"POST /api/v1/passkeys": {{path: fixed("/api/v1/passkeys"), body: map[string]any{"name": "key", "credential": map[string]string{"id": "x"}},
			want: everyone(invalid)}},
		"DELETE /api/v1/passkeys/{id}": {{path: fixed("/api/v1/passkeys/pk1"), want: everyone(forbidden)}},
		"POST /api/v1/stepup/begin": {{path: fixed("/api/v1/stepup/begin"), body: map[string]string{"action": "request.approve", "object_id": "rq_1"},
			want: everyone(invalid)}},

		"POST /api/v1/totp/begin": {{path: fixed("/api/v1/totp/begin"), want: everyone(forbidden)}},
		"POST /api/v1/totp":       {{path: fixed("/api/v1/totp"), body: map[string]string{"code": "000000"}, want: everyone(invalid)}},

		// Requesting follows the role's requesters (dbas).
		"POST /api/v1/requests": {{path: fixed("/api/v1/requests"), body: map[string]string{"target": "demo-pg", "role": "readonly",
			"duration": "30m", "reason": "INC-1"}, want: only(created, forbidden, requester)}},
		"GET /api/v1/requests": {
			{path: fixed("/api/v1/requests"), want: everyone(ok)},
			// The every-request view: security and auditors only.
			{path: fixed("/api/v1/requests?view=all"), want: only(ok, forbidden, security)},
		},
		"GET /api/v1/requests/{id}": {
			// Another requester's request: its approvers and security.
			{path: func(t *testing.T, x *authzEnv) string { return "/api/v1/requests/" + x.pending(t, "dave") },
				want: only(ok, forbidden, approver, security)},
			// One's own.
			{path: func(t *testing.T, x *authzEnv) string { return "/api/v1/requests/" + x.f.Pending.ID },
				want: only(ok, forbidden, requester, approver, security)},
		},
		"POST /api/v1/requests/{id}/approve": {
			{path: func(t *testing.T, x *authzEnv) string { return "/api/v1/requests/" + x.pending(t, "dave") + "/approve" },
				want: only(ok, forbidden, approver)},
			// Never one's own.
			{path: func(t *testing.T, x *authzEnv) string {
				return "/api/v1/requests/" + x.pending(t, "alice") + "/approve"
			},
				want: only(ok, forbidden, approver)},
		},
		"POST /api/v1/requests/{id}/deny": {{path: func(t *testing.T, x *authzEnv) string {
			return "/api/v1/requests/" + x.pending(t, "alice") + "/deny"
		}, body: map[string]string{"reason": "no"}, want: only(ok, forbidden, approver)}},
		"POST /api/v1/requests/{id}/cancel": {{path: func(t *testing.T, x *authzEnv) string {
			return "/api/v1/requests/" + x.pending(t, "alice") + "/cancel"
		}, want: only(ok, forbidden, requester)}},

		"GET /api/v1/grants": {{path: fixed("/api/v1/grants"), want: everyone(ok)}},
		"GET /api/v1/grants/{id}": {
			// dave's grant (approved by carol): not for alice.
			{path: func(t *testing.T, x *authzEnv) string { return "/api/v1/grants/" + x.f.DaveGrant.ID },
				want: only(ok, forbidden, approver, security)},
			{path: func(t *testing.T, x *authzEnv) string { return "/api/v1/grants/" + x.f.Grant.ID },
				want: only(ok, forbidden, seen...)},
		},
		"POST /api/v1/grants/{id}/revoke": {{path: func(t *testing.T, x *authzEnv) string {
			return "/api/v1/grants/" + x.env.Grant(t, "dave", "demo-ssh", "ops", "carol").ID + "/revoke"
		}, body: map[string]string{"reason": "authz table"}, want: only(ok, forbidden, approver, security)}},
		// Only the grant's holder may ask to extend it; those who may see
		// it are refused, those who may not are told it does not exist.
		"POST /api/v1/grants/{id}/extend": {{path: func(t *testing.T, x *authzEnv) string {
			return "/api/v1/grants/" + x.env.Grant(t, "alice", "demo-ssh", "ops", "bob").ID + "/extend"
		}, body: map[string]string{"duration": "30m", "reason": "authz table"},
			want: want{other: forbidden, by: map[string]int{anon: unauth, requester: created, custodian: notFound}}}},
		// Answers everyone, with only the grants they may see (see
		// TestVisibility).
		"GET /api/v1/access": {{path: fixed("/api/v1/access?target=demo-ssh"), want: everyone(ok)}},

		"GET /api/v1/sessions": {{path: fixed("/api/v1/sessions"), want: everyone(ok)}},
		"GET /api/v1/sessions/{id}": {
			{path: func(t *testing.T, x *authzEnv) string { return "/api/v1/sessions/" + x.f.SSH }, want: only(ok, forbidden, seen...)},
			// dave's session: its approver was carol.
			{path: func(t *testing.T, x *authzEnv) string { return "/api/v1/sessions/" + x.f.DaveSSH }, want: only(ok, forbidden, security)},
		},
		"GET /api/v1/sessions/{id}/verify": {{path: func(t *testing.T, x *authzEnv) string {
			return "/api/v1/sessions/" + x.f.SSH + "/verify"
		}, want: only(ok, forbidden, seen...)}},
		"GET /api/v1/sessions/{id}/export": {{path: func(t *testing.T, x *authzEnv) string {
			return "/api/v1/sessions/" + x.f.SSH + "/export?format=jsonl"
		}, want: only(ok, forbidden, seen...)}},
		"GET /api/v1/sessions/{id}/evidence": {{path: func(t *testing.T, x *authzEnv) string {
			return "/api/v1/sessions/" + x.f.DaveSSH + "/evidence"
		}, want: only(ok, forbidden, security)}},
		"POST /api/v1/sessions/{id}/kill": {{path: func(t *testing.T, x *authzEnv) string {
			id := x.id("ses_kill")
			x.env.StartLive(t, x.f.Grant, id)
			return "/api/v1/sessions/" + id + "/kill"
		}, body: map[string]string{"reason": "authz table"}, want: only(ok, forbidden, security)}},

		"GET /api/v1/audit":              {{path: fixed("/api/v1/audit"), want: only(ok, forbidden, security)}},
		"GET /api/v1/users":              {{path: fixed("/api/v1/users"), want: only(ok, forbidden, security)}},
		"GET /api/v1/audit/verify":       {{path: fixed("/api/v1/audit/verify"), want: only(ok, forbidden, security)}},
		"GET /api/v1/audit/views":        {{path: fixed("/api/v1/audit/views"), want: only(ok, forbidden, security)}},
		"GET /api/v1/audit/views/{view}": {{path: fixed("/api/v1/audit/views/sessions-terminated"), want: only(ok, forbidden, security)}},

		// Runtime profiles (listen.pprof on for this table): security only.
		"GET /api/v1/debug/pprof/":          {{path: fixed("/api/v1/debug/pprof/"), want: only(ok, forbidden, security)}},
		"GET /api/v1/debug/pprof/{profile}": {{path: fixed("/api/v1/debug/pprof/cmdline"), want: only(ok, forbidden, security)}, {path: fixed("/api/v1/debug/pprof/goroutine?debug=1"), want: only(ok, forbidden, security)}},

		// Lists answer everyone with what they may see.
		"GET /api/v1/breakglass":           {{path: fixed("/api/v1/breakglass"), want: everyone(ok)}},
		"GET /api/v1/breakglass/{account}": {{path: fixed("/api/v1/breakglass/ssh-root"), want: only(ok, forbidden, security, custodian)}},
		// Without a reason: a custodian gets as far as the reason check.
		"POST /api/v1/breakglass/{account}/unseal": {{path: fixed("/api/v1/breakglass/ssh-root/unseal"),
			body: map[string]string{"password": "x"}, want: only(invalid, forbidden, custodian)}},
		// An unseal nobody asked for: nothing to confirm.
		"POST /api/v1/breakglass/unseals/{id}/confirm": {{path: fixed("/api/v1/breakglass/unseals/uns_none/confirm"),
			body: map[string]string{"password": "x"}, want: only(notFound, notFound)}},
		// A sealed account: security and custodians get as far as "not open".
		"POST /api/v1/breakglass/{account}/close": {{path: fixed("/api/v1/breakglass/ssh-root/close"),
			body: map[string]string{"reason": "x"}, want: only(conflict, forbidden, security, custodian)}},
		"POST /api/v1/breakglass/{account}/reveal": {{path: fixed("/api/v1/breakglass/ssh-root/reveal"),
			body: map[string]string{"password": "x"}, want: only(forbidden, forbidden)}},
		"POST /api/v1/breakglass/{account}/report": {{path: fixed("/api/v1/breakglass/ssh-root/report"),
			body: map[string]string{}, want: only(invalid, forbidden, custodian)}},
		"GET /api/v1/drills": {{path: fixed("/api/v1/drills"), want: everyone(ok)}},
		"POST /api/v1/drills": {{path: fixed("/api/v1/drills"), body: map[string]string{"account": "pg-admin"},
			want: only(unauth, forbidden, custodian)}},
		"GET /api/v1/drills/report": {{path: fixed("/api/v1/drills/report?quarter=2026Q4"), want: everyone(ok)}},
		"GET /api/v1/drills/{id}":   {{path: fixed("/api/v1/drills/drl_none"), want: only(notFound, notFound)}},

		// The risk dashboard: security staff and auditors only.
		"GET /api/v1/indicators":         {{path: fixed("/api/v1/indicators"), want: only(ok, forbidden, security)}},
		"GET /api/v1/indicators/{name}":  {{path: fixed("/api/v1/indicators/active_grants"), want: only(ok, forbidden, security)}},
		"GET /api/v1/indicators/actions": {{path: fixed("/api/v1/indicators/actions?all=true"), want: only(ok, forbidden, security)}},
		// Who saw which fields unmasked: read from the audit log.
		"GET /api/v1/unmasked": {{path: fixed("/api/v1/unmasked"), want: only(ok, forbidden, security)}},
		// An action nobody opened: security gets as far as "no action".
		"POST /api/v1/indicators/actions/{id}/close": {{path: fixed("/api/v1/indicators/actions/act_none/close"),
			body: map[string]string{"comment": "authz table"}, want: only(notFound, forbidden, security)}},
		// Evidence, share links and retrieval drills: security and
		// auditors only.
		"GET /api/v1/evidence": {{path: fixed("/api/v1/evidence?target=demo-ssh&from=2026-01-01&to=2030-01-01"),
			want: only(ok, forbidden, security)}},
		"POST /api/v1/shares": {{path: fixed("/api/v1/shares"), body: map[string]string{"kind": "evidence", "target": "demo-ssh",
			"from": "2026-01-01", "to": "2030-01-01", "ttl": "1h"}, want: only(created, forbidden, security)}},
		"GET /api/v1/shares": {{path: fixed("/api/v1/shares"), want: only(ok, forbidden, security)}},
		"DELETE /api/v1/shares/{id}": {{path: func(t *testing.T, x *authzEnv) string {
			l, _ := x.share(t)
			return "/api/v1/shares/" + l.ID
		}, want: only(ok, forbidden, security)}},
		"POST /api/v1/drills/retrieval": {{path: fixed("/api/v1/drills/retrieval"),
			body: map[string]any{"questions": []map[string]any{{"q": "authz table", "ms": 1, "pass": true}}},
			want: only(created, forbidden, security)}},
		"GET /api/v1/drills/retrieval": {{path: fixed("/api/v1/drills/retrieval"), want: only(ok, forbidden, security)}},
		// A share link is its own credential: anyone with it, signed in
		// or not, gets what it shares.
		"GET /share/{token}": {{path: func(t *testing.T, x *authzEnv) string {
			_, token := x.share(t)
			return web.SharePath(token)
		}, want: all(ok)}},
		// Access reviews: the reviewers (by default the security admins)
		// read and conduct them. Starting with a name too long gets a
		// reviewer as far as the name check; a review nobody started is
		// not found, for reviewers only.
		"GET /api/v1/reviews": {{path: fixed("/api/v1/reviews"), want: only(ok, forbidden, security)}},
		"POST /api/v1/reviews": {{path: fixed("/api/v1/reviews"), body: map[string]string{"name": strings.Repeat("q", 65)},
			want: only(invalid, forbidden, security)}},
		"GET /api/v1/reviews/{id}":        {{path: fixed("/api/v1/reviews/rev_none"), want: only(notFound, forbidden, security)}},
		"GET /api/v1/reviews/{id}/export": {{path: fixed("/api/v1/reviews/rev_none/export"), want: only(notFound, forbidden, security)}},
		"POST /api/v1/reviews/{id}/lines/{n}": {{path: fixed("/api/v1/reviews/rev_none/lines/1"),
			body: map[string]string{"verdict": "attest"}, want: only(notFound, forbidden, security)}},
		"POST /api/v1/reviews/{id}/attest": {{path: fixed("/api/v1/reviews/rev_none/attest"),
			body: map[string]string{"meaning": "reviewed, no concerns", "password": "x"}, want: only(notFound, forbidden, security)}},

		// Connection tokens need an active grant on the target.
		"GET /api/v1/holds": {{path: fixed("/api/v1/holds"), want: everyone(ok)}},
		"GET /api/v1/holds/{id}": {{path: func(t *testing.T, x *authzEnv) string {
			return "/api/v1/holds/" + x.env.HoldStatement(t, "alice", "DELETE FROM t")
		}, want: only(ok, notFound, seen...)}},
		// Approvers of the role decide; the session's own user (alice) may
		// see but not decide; security may see, not decide.
		"POST /api/v1/holds/{id}/approve": {{path: func(t *testing.T, x *authzEnv) string {
			return "/api/v1/holds/" + x.env.HoldStatement(t, "alice", "DELETE FROM t") + "/approve"
		}, want: want{other: notFound, by: map[string]int{anon: unauth, approver: ok, requester: forbidden, security: forbidden}}}},
		"POST /api/v1/holds/{id}/deny": {{path: func(t *testing.T, x *authzEnv) string {
			return "/api/v1/holds/" + x.env.HoldStatement(t, "alice", "UPDATE t SET a = 1") + "/deny"
		}, body: map[string]string{"reason": "not now"},
			want: want{other: notFound, by: map[string]int{anon: unauth, approver: ok, requester: forbidden, security: forbidden}}}},

		"POST /api/v1/db/token": {{path: fixed("/api/v1/db/token"), body: map[string]string{"target": "demo-pg"},
			want: only(ok, forbidden, requester)}},
		"POST /api/v1/ssh/certificate": {{path: fixed("/api/v1/ssh/certificate"), body: map[string]string{"public_key": pubKey},
			want: everyone(ok)}},

		"GET /{$}":                        {{path: fixed("/"), page: true, want: all(redirect)}},
		"GET /ui/{$}":                     {{path: fixed("/ui/"), page: true, want: all(redirect)}},
		"GET /ui/login":                   {{path: fixed("/ui/login"), page: true, want: all(ok)}},
		"GET /ui/static/":                 {{path: fixed("/ui/static/js/app.js"), page: true, want: all(ok)}},
		"GET /ui/requests":                page("/ui/requests"),
		"GET /ui/requests/{id}":           page("/ui/requests/req_x"),
		"GET /ui/sessions":                page("/ui/sessions"),
		"GET /ui/sessions/{id}":           page("/ui/sessions/ses_x"),
		"GET /ui/live":                    page("/ui/live"),
		"GET /ui/live/{id}":               page("/ui/live/ses_x"),
		"GET /ui/verify/{id}":             page("/ui/verify/ses_x"),
		"GET /ui/audit":                   page("/ui/audit"),
		"GET /ui/evidence":                page("/ui/evidence"),
		"GET /ui/breakglass":              page("/ui/breakglass"),
		"GET /ui/dashboard":               page("/ui/dashboard"),
		"GET /ui/security":                page("/ui/security"),
		"GET /ui/breakglass/unseals/{id}": page("/ui/breakglass/unseals/uns_x"),
		"GET /ui/reviews":                 page("/ui/reviews"),
		"GET /ui/reviews/{id}":            page("/ui/reviews/rev_x"),

		"GET /ws/replay": {
			{path: func(t *testing.T, x *authzEnv) string { return "/ws/replay?session=" + x.f.SSH }, ws: true,
				want: only(switching, forbidden, seen...)},
			{path: func(t *testing.T, x *authzEnv) string { return "/ws/replay?session=" + x.f.DaveSSH }, ws: true,
				want: only(switching, forbidden, security)},
		},
		"GET /ws/live": {{path: func(t *testing.T, x *authzEnv) string { return "/ws/live?session=" + x.live }, ws: true,
			want: only(switching, forbidden, seen...)}},
	}
}

// caller is one role signed in one way.
type caller struct {
	role   string
	http   *http.Client
	bearer string
	cookie string
	csrf   string
}

func signIn(t *testing.T, x *authzEnv, role string, cookie bool) *caller {
	t.Helper()
	c := &caller{role: role, http: x.env.Client()}
	user, ok := playedBy[role]
	if !ok {
		return c
	}
	kind := "api"
	if cookie {
		kind = "web"
	}
	secret, _, err := x.env.Identity.Tokens().Issue(t.Context(), user, kind, "", time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if !cookie {
		c.bearer = secret
		return c
	}
	c.cookie = secret
	var me struct {
		CSRF string `json:"csrf"`
	}
	if st, b := c.do(t, x, "GET", "/api/v1/whoami", nil); st != http.StatusOK || json.Unmarshal(b, &me) != nil || me.CSRF == "" {
		t.Fatalf("%s: whoami with the session cookie: %d %s", role, st, b)
	}
	c.csrf = me.CSRF
	return c
}

func (c *caller) header(x *authzEnv) http.Header {
	h := http.Header{}
	if c.bearer != "" {
		h.Set("Authorization", "Bearer "+c.bearer)
	}
	if c.cookie != "" {
		h.Set("Cookie", (&http.Cookie{Name: "custos_session", Value: c.cookie}).String())
		h.Set("X-CSRF-Token", c.csrf)
	}
	h.Set("Origin", x.env.URL)
	return h
}

func (c *caller) do(t *testing.T, x *authzEnv, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, x.env.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = c.header(x)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

func (c *caller) dial(t *testing.T, x *authzEnv, path string) int {
	t.Helper()
	u, _ := url.Parse(x.env.URL)
	d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, HandshakeTimeout: 5 * time.Second}
	h := c.header(x)
	h.Del("X-CSRF-Token")
	conn, res, err := d.Dial("wss://"+u.Host+path, h)
	if err == nil {
		conn.Close()
		return http.StatusSwitchingProtocols
	}
	if res == nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	return res.StatusCode
}

// Every route and websocket the broker serves, for every role, signed in
// with the web UI's session cookie and with an API bearer token: the
// status each gets. A route served without a row here fails the test.
func TestAuthorizationTable(t *testing.T) {
	env := uitest.Start(t)
	x := &authzEnv{env: env, f: env.Seed(t, 0), live: "ses_live_authz"}
	env.StartLive(t, x.f.Grant, x.live)
	env.Config.Listen.Pprof = true // the profiling rows; off by default: TestPprofOffByDefault
	tab := table()

	var missing []string
	for _, p := range env.Web.Routes() {
		if len(tab[p]) == 0 {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("routes without a row in the authorization table: %v", missing)
	}
	for p := range tab {
		if !slices.Contains(env.Web.Routes(), p) {
			t.Errorf("table row for %s, which is not served", p)
		}
	}

	for _, mode := range []string{"cookie", "bearer"} {
		callers := map[string]*caller{}
		for _, r := range roles {
			callers[r] = signIn(t, x, r, mode == "cookie")
		}
		for _, p := range env.Web.Routes() {
			method, _, _ := strings.Cut(p, " ")
			for i, rw := range tab[p] {
				if (rw.page || rw.ws) && mode == "bearer" {
					continue
				}
				for _, role := range roles {
					c := callers[role]
					if method == http.MethodDelete && p == "DELETE /api/v1/session" {
						c = signIn(t, x, role, mode == "cookie")
					}
					path := rw.path(t, x)
					var got int
					var body []byte
					if rw.ws {
						got = c.dial(t, x, path)
					} else {
						got, body = c.do(t, x, method, path, rw.body)
					}
					if want := rw.want.of(role); got != want {
						t.Errorf("%s row %d (%s) as %s by %s: %d, want %d: %.200s", p, i, path, role, mode, got, want, body)
					}
				}
			}
		}
	}
}

// A requester sees their own requests and grants and nobody else's;
// approvers see those of the roles they approve; security sees all. What
// the API answers and what Slack refuses come from the same rules.
func TestVisibility(t *testing.T) {
	env := uitest.Start(t)
	x := &authzEnv{env: env, f: env.Seed(t, 0)}
	grantUsers := func(c *caller, path, field string) []string {
		t.Helper()
		st, b := c.do(t, x, "GET", path, nil)
		if st != http.StatusOK {
			t.Fatalf("%s: %d %s", path, st, b)
		}
		var gs []broker.Grant
		if field != "" {
			var m map[string]json.RawMessage
			_ = json.Unmarshal(b, &m)
			b = m[field]
		}
		if err := json.Unmarshal(b, &gs); err != nil {
			t.Fatal(err)
		}
		var users []string
		for _, g := range gs {
			if !slices.Contains(users, g.User) {
				users = append(users, g.User)
			}
		}
		slices.Sort(users)
		return users
	}
	for _, tt := range []struct {
		role string
		want string
	}{
		{requester, "[alice]"},
		{approver, "[alice dave]"},
		{security, "[alice dave]"},
		{custodian, "[]"},
	} {
		c := signIn(t, x, tt.role, false)
		if got := fmt.Sprint(grantUsers(c, "/api/v1/access?target=demo-ssh", "grants")); got != tt.want {
			t.Errorf("%s: /access shows grants of %s, want %s", tt.role, got, tt.want)
		}
		if got := fmt.Sprint(grantUsers(c, "/api/v1/grants?target=demo-ssh", "")); got != tt.want {
			t.Errorf("%s: /grants shows grants of %s, want %s", tt.role, got, tt.want)
		}
	}
	// A requester listing requests sees only their own.
	dave := x.pending(t, "dave")
	alice := signIn(t, x, requester, false)
	st, b := alice.do(t, x, "GET", "/api/v1/requests", nil)
	if st != http.StatusOK || strings.Contains(string(b), dave) || strings.Contains(string(b), `"user": "dave"`) {
		t.Errorf("alice's request list shows dave's: %d %.300s", st, b)
	}
}

// The channel of a vote is the server's to name: a bearer token is the
// CLI, the session cookie the web UI, whatever the body says.
func TestApprovalChannelDecidedByServer(t *testing.T) {
	env := uitest.Start(t)
	x := &authzEnv{env: env, f: env.Seed(t, 0)}
	for _, tt := range []struct {
		cookie bool
		want   string
	}{{false, "cli"}, {true, "web"}} {
		id := x.pending(t, "dave")
		bob := signIn(t, x, approver, tt.cookie)
		via := "web"
		if tt.cookie {
			via = "slack"
		}
		if st, b := bob.do(t, x, "POST", "/api/v1/requests/"+id+"/approve", map[string]string{"comment": "ok", "via": via}); st != http.StatusOK {
			t.Fatalf("approve: %d %s", st, b)
		}
		var got string
		for _, r := range env.AuditRecords(t, "request.approve") {
			var d map[string]any
			_ = json.Unmarshal(r.Details, &d)
			if d["request_id"] == id {
				got, _ = d["via"].(string)
			}
		}
		if got != tt.want {
			t.Errorf("cookie=%v, body via %q: audit record says via %q, want %q", tt.cookie, via, got, tt.want)
		}
	}
}

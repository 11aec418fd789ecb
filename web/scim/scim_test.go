package scim

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/broker/store/sqlite"
)

const testToken = "scim-test-token-0123456789abcdefghijklmnop"

type env struct {
	t     *testing.T
	url   string
	ids   *identity.Service
	store broker.Store
	cfg   *config.Config
	lost  []string
}

// newEnv serves SCIM over a real identity service on SQLite, with the
// config users alice (dbas), sam (security, an admin group) and the
// disabled mallory.
func newEnv(t *testing.T, adminGroups ...string) *env {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "custos.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := &config.Config{
		Users: []config.User{{Name: "alice"}, {Name: "sam"}, {Name: "mallory", Disabled: true}},
		Groups: []config.Group{{Name: "dbas", Members: []string{"alice"}}, {Name: "security", Members: []string{"sam"}},
			{Name: "approvers"}},
		SecurityAdmins: []string{"security"},
	}
	dir, err := identity.NewDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir.SetSCIMAdminGroups(adminGroups)
	log := audit.NewLog(st)
	ids, err := identity.NewService(identity.Options{Directory: dir, Store: st, Audit: log})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ids: ids, store: st, cfg: cfg}
	ids.SetAccessLoss(func(ctx context.Context, user, reason string) error {
		e.lost = append(e.lost, user+": "+reason)
		_, err := ids.RevokeUserTokens(ctx, user, reason)
		return err
	})
	h, err := New(Options{Token: testToken, Store: ids, Rejections: audit.NewThrottle(log, audit.ThrottleOptions{}), BaseURL: "https://custos.example"})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	e.url = srv.URL + "/scim/v2"
	return e
}

func (e *env) do(method, path, token string, body any) (int, map[string]any) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.url+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/scim+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func (e *env) ok(method, path string, body any, want int) map[string]any {
	e.t.Helper()
	code, out := e.do(method, path, testToken, body)
	if code != want {
		e.t.Fatalf("%s %s: %d %v, want %d", method, path, code, out, want)
	}
	return out
}

func (e *env) createUser(name string) string {
	e.t.Helper()
	out := e.ok("POST", "/Users", map[string]any{"schemas": []string{schemaUser}, "userName": name, "externalId": "ext-" + name,
		"name":   map[string]string{"givenName": name},
		"emails": []map[string]any{{"primary": true, "value": name + "@example.org", "type": "work"}}, "active": true}, 201)
	return out["id"].(string)
}

func (e *env) createGroup(name string, members ...string) string {
	e.t.Helper()
	var ms []map[string]string
	for _, m := range members {
		ms = append(ms, map[string]string{"value": m})
	}
	out := e.ok("POST", "/Groups", map[string]any{"schemas": []string{schemaGroup}, "displayName": name, "members": ms}, 201)
	return out["id"].(string)
}

func patch(ops ...map[string]any) map[string]any {
	return map[string]any{"schemas": []string{schemaPatch}, "Operations": ops}
}

// TestSCIMAuth: only the SCIM token opens /scim/v2; a user's API token
// is refused like any wrong token, and each refusal is audited.
func TestSCIMAuth(t *testing.T) {
	e := newEnv(t)
	userTok, _, err := e.ids.Tokens().Issue(context.Background(), "sam", identity.KindAPI, "", time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{"", userTok, testToken + "x", testToken[:len(testToken)-1]} {
		code, out := e.do("GET", "/Users", tok, nil)
		if code != 401 || out["status"] != "401" || !slices.Contains(toStrings(out["schemas"]), schemaError) {
			t.Errorf("token %.8q…: %d %v", tok, code, out)
		}
		code, _ = e.do("POST", "/Users", tok, map[string]any{"userName": "eve"})
		if code != 401 {
			t.Errorf("create with token %.8q…: %d", tok, code)
		}
	}
	if _, ok := e.ids.Directory().Lookup("eve"); ok {
		t.Fatal("eve was created without the SCIM token")
	}
	recs := auditRecords(t, e.store, "scim.auth")
	if len(recs) == 0 || recs[0].Outcome != broker.OutcomeDenied {
		t.Fatalf("refusals not audited: %+v", recs)
	}
	for _, r := range recs {
		if strings.Contains(string(mustJSON(r)), userTok) {
			t.Fatal("a presented token reached the audit log")
		}
	}
	e.ok("GET", "/ServiceProviderConfig", nil, 200)
	e.ok("GET", "/ResourceTypes", nil, 200)
	e.ok("GET", "/Schemas", nil, 200)
}

// TestSCIMUsersOktaAndEntra drives users and groups with the requests
// Okta and Entra ID send, and checks what the directory sees after each.
func TestSCIMUsersOktaAndEntra(t *testing.T) {
	e := newEnv(t)
	dir := e.ids.Directory()
	// Okta looks the user up first, then creates them.
	if out := e.ok("GET", `/Users?filter=userName%20eq%20%22dave%22&startIndex=1&count=100`, nil, 200); out["totalResults"].(float64) != 0 {
		t.Fatalf("empty filter: %v", out)
	}
	dave := e.createUser("dave")
	erin := e.createUser("erin")
	if out := e.ok("GET", `/Users?filter=userName%20eq%20%22DAVE%22`, nil, 200); out["totalResults"].(float64) != 1 {
		t.Fatalf("userName filter (case-insensitive): %v", out)
	}
	if out := e.ok("GET", `/Users?filter=externalId%20eq%20%22ext-erin%22`, nil, 200); out["totalResults"].(float64) != 1 {
		t.Fatalf("externalId filter: %v", out)
	}
	if code, out := e.do("GET", `/Users?filter=userName%20co%20%22d%22`, testToken, nil); code != 400 || out["scimType"] != "invalidFilter" {
		t.Fatalf("unsupported filter: %d %v", code, out)
	}
	if !dir.Enabled("dave") || len(dir.GroupsOf("dave")) != 0 {
		t.Fatalf("dave after create: enabled %v groups %v", dir.Enabled("dave"), dir.GroupsOf("dave"))
	}

	// A group named like a policy group: its members are in it at once.
	g := e.createGroup("dbas", dave)
	if !dir.InGroup("dave", "dbas") {
		t.Fatal("dave not in dbas after group create")
	}
	if m, _ := dir.Members("dbas"); !slices.Equal(m, []string{"alice", "dave"}) {
		t.Fatalf("dbas members: %v", m)
	}
	if out := e.ok("GET", `/Groups?filter=displayName%20eq%20%22dbas%22&excludedAttributes=members`, nil, 200); out["totalResults"].(float64) != 1 {
		t.Fatalf("displayName filter: %v", out)
	}
	// Okta adds a member.
	e.ok("PATCH", "/Groups/"+g, patch(map[string]any{"op": "add", "path": "members", "value": []map[string]string{{"value": erin, "display": "erin"}}}), 200)
	if !dir.InGroup("erin", "dbas") {
		t.Fatal("erin not added")
	}
	// Entra checks membership with a filter.
	if out := e.ok("GET", `/Groups?filter=id%20eq%20%22`+g+`%22%20and%20members%5Bvalue%20eq%20%22`+erin+`%22%5D&excludedAttributes=members`, nil, 200); out["totalResults"].(float64) != 1 {
		t.Fatalf("membership filter: %v", out)
	}
	// Okta removes a member with a value filter path.
	e.ok("PATCH", "/Groups/"+g, patch(map[string]any{"op": "remove", "path": `members[value eq "` + erin + `"]`}), 200)
	if dir.InGroup("erin", "dbas") || !slices.ContainsFunc(e.lost, func(s string) bool {
		return strings.HasPrefix(s, "erin: ") && strings.Contains(s, "removed from group dbas")
	}) {
		t.Fatalf("erin removal: in group %v, losses %v", dir.InGroup("erin", "dbas"), e.lost)
	}
	// Entra adds and removes with capitalised ops and value lists.
	e.ok("PATCH", "/Groups/"+g, patch(map[string]any{"op": "Add", "path": "members", "value": []map[string]string{{"value": erin}}}), 200)
	e.ok("PATCH", "/Groups/"+g, patch(map[string]any{"op": "Remove", "path": "members", "value": []map[string]string{{"value": erin}}}), 200)
	if dir.InGroup("erin", "dbas") {
		t.Fatal("Entra remove did not remove")
	}
	// Okta renames the group with a pathless replace.
	e.ok("PATCH", "/Groups/"+g, patch(map[string]any{"op": "replace", "value": map[string]any{"id": g, "displayName": "approvers"}}), 200)
	if dir.InGroup("dave", "dbas") || !dir.InGroup("dave", "approvers") {
		t.Fatalf("rename: dave's groups %v", dir.GroupsOf("dave"))
	}

	// Deactivation as Okta sends it, with dave holding a token.
	tok, _, err := e.ids.Tokens().Issue(context.Background(), "dave", identity.KindAPI, "", time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	out := e.ok("PATCH", "/Users/"+dave, patch(map[string]any{"op": "replace", "value": map[string]any{"active": false}}), 200)
	if out["active"] != false || dir.Enabled("dave") {
		t.Fatalf("okta deactivation: %v, enabled %v", out, dir.Enabled("dave"))
	}
	if m, _ := dir.Members("approvers"); slices.Contains(m, "dave") {
		t.Fatal("a deactivated user is still a member")
	}
	if _, err := e.ids.VerifyToken(context.Background(), tok, identity.KindAPI); identity.CodeOf(err) != identity.CodeTokenInvalid {
		t.Fatalf("dave's token after deactivation: %v", err)
	}
	// Reactivation as Entra sends it ("True" as a string).
	e.ok("PATCH", "/Users/"+dave, patch(map[string]any{"op": "Replace", "path": "active", "value": "True"}), 200)
	if !dir.Enabled("dave") || !dir.InGroup("dave", "approvers") {
		t.Fatal("reactivation")
	}
	e.ok("PATCH", "/Users/"+dave, patch(map[string]any{"op": "Replace", "path": "active", "value": "False"}), 200)
	if dir.Enabled("dave") {
		t.Fatal("entra deactivation")
	}
	// Delete: gone from the directory, 404 afterwards; the name is free
	// for the provider to create again.
	e.ok("DELETE", "/Users/"+erin, nil, 204)
	if code, out := e.do("GET", "/Users/"+erin, testToken, nil); code != 404 || out["status"] != "404" {
		t.Fatalf("deleted user: %d %v", code, out)
	}
	if dir.Enabled("erin") {
		t.Fatal("deleted user enabled")
	}
	e.createUser("erin")
	for _, want := range []string{"scim.user.create", "scim.user.deactivate", "scim.user.activate", "scim.user.delete", "scim.group.create", "scim.group.update"} {
		if len(auditRecords(t, e.store, want)) == 0 {
			t.Errorf("no %s record", want)
		}
	}
	if len(auditRecords(t, e.store, "token.revoke")) != 1 {
		t.Errorf("token.revoke records: %d", len(auditRecords(t, e.store, "token.revoke")))
	}

	// A fresh service over the same store (a restart, another replica)
	// sees the same users after LoadSCIM.
	d2, _ := identity.NewDirectory(&config.Config{Users: []config.User{{Name: "alice"}}})
	s2, err := identity.NewService(identity.Options{Directory: d2, Store: e.store, Audit: audit.NewLog(e.store)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.LoadSCIM(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !d2.Enabled("erin") || d2.Enabled("dave") {
		t.Fatalf("reloaded: erin %v dave %v", d2.Enabled("erin"), d2.Enabled("dave"))
	}
}

// TestSCIMUsersCannotTakeConfigNames: a SCIM user cannot be named like
// a config user, enabled or disabled, nor renamed into one; nor can two
// SCIM users or groups share a name.
func TestSCIMUsersCannotTakeConfigNames(t *testing.T) {
	e := newEnv(t)
	for _, name := range []string{"mallory", "sam"} {
		code, out := e.do("POST", "/Users", testToken, map[string]any{"userName": name})
		if code != 409 || out["scimType"] != "uniqueness" {
			t.Errorf("create %s: %d %v", name, code, out)
		}
	}
	if e.ids.Directory().Enabled("mallory") {
		t.Fatal("mallory enabled")
	}
	id := e.createUser("dave")
	if code, _ := e.do("PATCH", "/Users/"+id, testToken, patch(map[string]any{"op": "replace", "path": "userName", "value": "mallory"})); code != 409 {
		t.Errorf("rename to mallory: %d", code)
	}
	if code, _ := e.do("POST", "/Users", testToken, map[string]any{"userName": "dave"}); code != 409 {
		t.Errorf("duplicate: %d", code)
	}
	if code, _ := e.do("POST", "/Users", testToken, map[string]any{"userName": "bad name"}); code != 400 {
		t.Errorf("name with a space: %d", code)
	}
	e.createGroup("dbas")
	if code, _ := e.do("POST", "/Groups", testToken, map[string]any{"displayName": "dbas"}); code != 409 {
		t.Errorf("duplicate group: %d", code)
	}
	if code, _ := e.do("POST", "/Groups", testToken, map[string]any{"displayName": "x", "members": []map[string]string{{"value": "nope"}}}); code != 400 {
		t.Errorf("unknown member: %d", code)
	}
}

// TestSCIMSecurityAdminGroup: adding a user to a group listed in
// security_admins through SCIM is a group membership (policy sees it) but
// not security-admin rights, unless identity.scim.security_admin_groups
// names the group.
func TestSCIMSecurityAdminGroup(t *testing.T) {
	for _, allowed := range []bool{false, true} {
		var groups []string
		if allowed {
			groups = []string{"security"}
		}
		e := newEnv(t, groups...)
		dir := e.ids.Directory()
		dave := e.createUser("dave")
		g := e.createGroup("security")
		e.ok("PATCH", "/Groups/"+g, patch(map[string]any{"op": "add", "path": "members", "value": []map[string]string{{"value": dave}}}), 200)
		if !dir.InGroup("dave", "security") {
			t.Fatal("membership missing")
		}
		if got := dir.IsSecurityAdmin("dave"); got != allowed {
			t.Errorf("security_admin_groups %v: IsSecurityAdmin(dave) = %v", groups, got)
		}
		// What the API asks: broker/access over the same directory.
		acc := access.New(access.Options{Config: e.cfg, Directory: dir, Store: e.store, Audit: audit.NewLog(e.store)})
		if got := acc.May("dave", access.ListUsers); got != allowed {
			t.Errorf("security_admin_groups %v: access says dave may list users: %v", groups, got)
		}
		if !acc.May("sam", access.ListUsers) {
			t.Error("access: config admin sam lost")
		}
		if !dir.IsSecurityAdmin("sam") {
			t.Error("config admin lost")
		}
	}
}

func toStrings(v any) []string {
	var out []string
	if l, ok := v.([]any); ok {
		for _, x := range l {
			s, _ := x.(string)
			out = append(out, s)
		}
	}
	return out
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func auditRecords(t *testing.T, s broker.Store, prefix string) []broker.AuditRecord {
	t.Helper()
	var out []broker.AuditRecord
	if err := s.View(context.Background(), func(tx broker.Tx) error {
		var err error
		out, err = tx.ListAudit(broker.AuditFilter{ActionPrefix: prefix})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

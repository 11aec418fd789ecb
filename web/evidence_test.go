package web_test

import (
	"archive/zip"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/retrieval"
	"github.com/custos-pam/custos/broker/share"
	"github.com/custos-pam/custos/recorder/evidence"
	"github.com/custos-pam/custos/web"
	"github.com/custos-pam/custos/web/ui/uitest"
)

// client calls the API as one user with a bearer token, or anonymously.
type client struct {
	env    *uitest.Env
	bearer string
	cookie string
}

func as(t *testing.T, env *uitest.Env, user string) client {
	t.Helper()
	secret, _, err := env.Identity.Tokens().Issue(t.Context(), user, "api", "", time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return client{env: env, bearer: secret}
}

func (c client) do(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, c.env.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	if c.cookie != "" {
		req.AddCookie(&http.Cookie{Name: web.SessionCookie, Value: c.cookie})
	}
	res, err := c.env.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

func unzip(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("not a zip: %v: %.200s", err, b)
	}
	out := map[string][]byte{}
	for _, f := range zr.File {
		rc, _ := f.Open()
		out[f.Name], _ = io.ReadAll(rc)
		rc.Close()
	}
	return out
}

func window() (string, string) {
	now := time.Now().UTC()
	return now.Add(-24 * time.Hour).Format("2006-01-02"), now.Add(48 * time.Hour).Format("2006-01-02")
}

// TestEvidenceAPI: security downloads a target's bundle for a period; it
// holds that target's sessions only, verified live against the
// recordings, validates against the schema, and the export is audited. A
// requester is refused, and the refusal is audited.
func TestEvidenceAPI(t *testing.T) {
	env := uitest.Start(t)
	f := env.Seed(t, 0)
	from, to := window()
	path := "/api/v1/evidence?target=demo-ssh&from=" + from + "&to=" + to

	st, body := as(t, env, "sam").do(t, "GET", path, nil)
	if st != http.StatusOK {
		t.Fatalf("sam: %d %s", st, body)
	}
	files := unzip(t, body)
	c := jsonschema.NewCompiler()
	sch, err := c.Compile(filepath.Join("..", "docs", "evidence.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(files["evidence.json"]))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(inst); err != nil {
		t.Fatalf("evidence.json: %v", err)
	}
	var b evidence.Bundle
	if err := json.Unmarshal(files["evidence.json"], &b); err != nil {
		t.Fatal(err)
	}
	ids := map[string]evidence.Session{}
	for _, s := range b.Sessions {
		ids[s.ID] = s
	}
	if len(ids) != 2 || ids[f.SSH].ID == "" || ids[f.DaveSSH].ID == "" {
		t.Fatalf("sessions %v: want demo-ssh's two (not demo-pg's)", ids)
	}
	for _, s := range ids {
		if s.Verify.Source != "live" || s.Verify.Intact == nil || !*s.Verify.Intact {
			t.Errorf("session %s verdict %+v: want verified live, intact", s.ID, s.Verify)
		}
		if len(s.Commands) == 0 {
			t.Errorf("session %s: no commands from the index", s.ID)
		}
		if _, ok := files[evidence.SessionPage(s.ID)]; !ok {
			t.Errorf("no page for %s", s.ID)
		}
	}
	if !b.Audit.Segment.OK || !b.Audit.Log.OK || len(b.Approvals) == 0 {
		t.Errorf("audit segment %+v, log %v, approvals %d", b.Audit.Segment, b.Audit.Log.OK, len(b.Approvals))
	}

	if st, _ := as(t, env, "alice").do(t, "GET", path, nil); st != http.StatusForbidden {
		t.Errorf("alice: %d, want 403", st)
	}
	var exported, refused bool
	for _, r := range env.AuditRecords(t, "evidence.export") {
		exported = exported || (r.Actor == "sam" && r.Outcome == broker.OutcomeSuccess && r.Target == "demo-ssh")
		refused = refused || (r.Actor == "alice" && r.Outcome == broker.OutcomeDenied)
	}
	if !exported || !refused {
		t.Errorf("audit: export by sam %v, refusal of alice %v", exported, refused)
	}
	// The live sample's verdicts are recorded.
	verified := 0
	for _, r := range env.AuditRecords(t, "session.verify") {
		if r.Actor == "sam" && strings.Contains(string(r.Details), `"via":"evidence"`) {
			verified++
		}
	}
	if verified != 2 {
		t.Errorf("%d session.verify records of the live sample, want 2", verified)
	}
	if st, _ := as(t, env, "sam").do(t, "GET", "/api/v1/evidence?target=demo-ssh&from="+to+"&to="+from, nil); st != http.StatusBadRequest {
		t.Errorf("reversed period: %d, want 400", st)
	}
}

type created struct {
	share.Link
	URL   string `json:"url"`
	Token string `json:"token"`
}

func createShare(t *testing.T, sam client, body map[string]string) created {
	t.Helper()
	st, b := sam.do(t, "POST", "/api/v1/shares", body)
	var c created
	if st != http.StatusCreated || json.Unmarshal(b, &c) != nil || c.Token == "" || !strings.HasSuffix(c.URL, web.SharePath(c.Token)) {
		t.Fatalf("create share: %d %s", st, b)
	}
	return c
}

// TestShareLinks: a share link works anonymously for what it shares and
// nothing else, until it is revoked or expires; its token is no bearer
// or cookie for any other route; creation, uses and revocation are
// audited without the token.
func TestShareLinks(t *testing.T) {
	env := uitest.Start(t)
	f := env.Seed(t, 0)
	sam, anon := as(t, env, "sam"), client{env: env}

	one := createShare(t, sam, map[string]string{"kind": "session", "session_id": f.SSH, "ttl": "1h", "note": "inspection"})
	st, body := anon.do(t, "GET", web.SharePath(one.Token), nil)
	if st != http.StatusOK {
		t.Fatalf("anonymous use: %d %s", st, body)
	}
	var s broker.Session
	if err := json.Unmarshal(unzip(t, body)["session.json"], &s); err != nil || s.ID != f.SSH {
		t.Fatalf("shared bundle is of %q, want %s", s.ID, f.SSH)
	}
	if st, _ := anon.do(t, "GET", web.SharePath(one.Token)+"?format=jsonl", nil); st != http.StatusOK {
		t.Errorf("shared recording export: %d", st)
	}

	// One session's link reaches no other session.
	st, body = anon.do(t, "GET", web.SharePath(one.Token)+"?session_id="+f.DaveSSH+"&id="+f.DaveSSH, nil)
	if err := json.Unmarshal(unzip(t, body)["session.json"], &s); st != http.StatusOK || err != nil || s.ID != f.SSH {
		t.Errorf("a parameter naming another session changed what the link shares: %d %q", st, s.ID)
	}
	for _, p := range []string{web.SharePath(one.Token) + "/" + f.DaveSSH, "/share/" + f.DaveSSH} {
		if st, _ := anon.do(t, "GET", p, nil); st != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, st)
		}
	}
	// The token is no credential anywhere else.
	for _, p := range []string{"/api/v1/whoami", "/api/v1/sessions", "/api/v1/sessions/" + f.SSH + "/evidence",
		"/api/v1/sessions/" + f.DaveSSH + "/export?format=jsonl", "/api/v1/shares", "/ui/sessions"} {
		for _, c := range []client{{env: env, bearer: one.Token}, {env: env, cookie: one.Token}} {
			st, _ := c.do(t, "GET", p, nil)
			if st == http.StatusOK {
				t.Errorf("the share token opened %s (bearer %v)", p, c.bearer != "")
			}
		}
	}

	// Every other route refuses it, as a bearer token and as a cookie.
	// (The sign-in routes, single sign-on's included, are open to anyone
	// and take no credential at all.)
	public := map[string]bool{"GET /api/v1/openapi.json": true, "POST /api/v1/login": true, "POST /api/v1/session": true,
		"GET /ui/login": true, "GET /ui/static/": true,
		"GET /api/v1/auth/sso": true, "POST /api/v1/auth/sso/start": true, "POST /api/v1/auth/sso/token": true,
		"POST /api/v1/auth/sso/device": true, "POST /api/v1/auth/sso/device/token": true}
	for _, route := range env.Web.Routes() {
		method, path, _ := strings.Cut(route, " ")
		if public[route] || !(strings.HasPrefix(path, "/api/v1/") || strings.HasPrefix(path, "/ws/") || strings.HasPrefix(path, "/ui/")) {
			continue
		}
		path = strings.NewReplacer("{id}", f.SSH, "{account}", "ssh-root", "{view}", "access-at", "{$}", "").Replace(path)
		for _, c := range []client{{env: env, bearer: one.Token}, {env: env, cookie: one.Token}} {
			st, _ := c.do(t, method, path, nil)
			if st != http.StatusUnauthorized && st != http.StatusSeeOther && st != http.StatusForbidden {
				t.Errorf("%s with the share token (bearer %v): %d, want it refused", route, c.bearer != "", st)
			}
		}
	}

	// An evidence link serves the period's bundle.
	from, to := window()
	ev := createShare(t, sam, map[string]string{"kind": "evidence", "target": "demo-ssh", "from": from, "to": to})
	st, body = anon.do(t, "GET", web.SharePath(ev.Token), nil)
	var b evidence.Bundle
	if err := json.Unmarshal(unzip(t, body)["evidence.json"], &b); st != http.StatusOK || err != nil || b.Target != "demo-ssh" ||
		b.GeneratedBy != "share:"+ev.ID {
		t.Fatalf("evidence link: %d, target %q by %q", st, b.Target, b.GeneratedBy)
	}

	// Listing shows no token or hash.
	_, list := sam.do(t, "GET", "/api/v1/shares", nil)
	if strings.Contains(string(list), one.Token) || strings.Contains(string(list), share.Hash(one.Token)) ||
		!strings.Contains(string(list), one.ID) {
		t.Errorf("share list leaks a token or hash, or lacks the link: %s", list)
	}

	// Revoked: refused.
	if st, b := sam.do(t, "DELETE", "/api/v1/shares/"+one.ID+"?reason=done", nil); st != http.StatusOK {
		t.Fatalf("revoke: %d %s", st, b)
	}
	if st, _ := anon.do(t, "GET", web.SharePath(one.Token), nil); st != http.StatusNotFound {
		t.Errorf("revoked link: %d, want 404", st)
	}
	// Expired: refused. (Created an hour and a half ago for an hour.)
	old := &share.Service{Store: env.State, Audit: env.Audit, Now: func() time.Time { return time.Now().Add(-90 * time.Minute) }}
	_, expired, err := old.Create(t.Context(), "sam", share.NewLink{Kind: share.KindSession, SessionID: f.SSH, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := anon.do(t, "GET", web.SharePath(expired), nil); st != http.StatusNotFound {
		t.Errorf("expired link: %d, want 404", st)
	}

	// The audit log tells the story, and never holds a token.
	want := map[string]bool{}
	for _, r := range env.AuditRecords(t, "") {
		raw, _ := json.Marshal(r)
		for _, tok := range []string{one.Token, ev.Token, expired} {
			if strings.Contains(string(raw), tok) {
				t.Fatalf("audit record %d (%s) holds a share token", r.Seq, r.Action)
			}
		}
		switch {
		case r.Action == "share.create" && r.Actor == "sam" && strings.Contains(string(r.Details), one.ID):
			want["create"] = true
		case r.Action == "share.use" && r.Actor == "share:"+one.ID && r.Outcome == broker.OutcomeSuccess:
			want["use"] = true
		case r.Action == "share.revoke" && r.Actor == "sam" && strings.Contains(string(r.Details), one.ID):
			want["revoke"] = true
		case r.Action == "share.use" && r.Actor == "share:"+one.ID && r.Outcome == broker.OutcomeDenied && r.Reason == "link revoked":
			want["refused revoked"] = true
		case r.Action == "share.use" && r.Outcome == broker.OutcomeDenied && r.Reason == "link expired":
			want["refused expired"] = true
		case r.Action == "session.recording.read" && r.Actor == "share:"+one.ID:
			want["recording read"] = true
		}
	}
	for _, k := range []string{"create", "use", "revoke", "refused revoked", "refused expired", "recording read"} {
		if !want[k] {
			t.Errorf("no audit record of the share link's %s", k)
		}
	}
}

// TestShareGuessingLimited: an address that tried too many unknown
// tokens is refused, even with a valid one, for the rest of the hour.
func TestShareGuessingLimited(t *testing.T) {
	env := uitest.Start(t)
	f := env.Seed(t, 0)
	valid := createShare(t, as(t, env, "sam"), map[string]string{"kind": "session", "session_id": f.SSH})
	anon := client{env: env}
	for i := range web.ShareMissesPerHour {
		var b [32]byte
		_, _ = rand.Read(b[:])
		if st, _ := anon.do(t, "GET", web.SharePath(base64.RawURLEncoding.EncodeToString(b[:])), nil); st != http.StatusNotFound {
			t.Fatalf("guess %d: %d, want 404", i, st)
		}
	}
	if st, _ := anon.do(t, "GET", web.SharePath(valid.Token), nil); st != http.StatusTooManyRequests {
		t.Fatalf("after %d guesses a valid link answered %d, want 429", web.ShareMissesPerHour, st)
	}
}

// TestRetrievalDrillAPI: a run is filed under drill.retrieval with its
// pass rate, a question over five minutes fails whatever the client
// claimed, and the run is audited.
func TestRetrievalDrillAPI(t *testing.T) {
	env := uitest.Start(t)
	sam := as(t, env, "sam")
	st, b := sam.do(t, "POST", "/api/v1/drills/retrieval", map[string]any{"questions": []map[string]any{
		{"q": "who could reach demo-ssh on 2026-10-02", "ms": 1200, "pass": true},
		{"q": "evidence bundle for demo-ssh in 2026-10", "ms": (6 * time.Minute).Milliseconds(), "pass": true},
	}})
	if st != http.StatusCreated {
		t.Fatalf("file run: %d %s", st, b)
	}
	s, err := retrieval.Load(t.Context(), env.State)
	if err != nil || len(s.Runs) != 1 {
		t.Fatalf("runs %v, %v", s.Runs, err)
	}
	run := s.Runs[0]
	if run.PassRate != 0.5 || !run.Questions[0].Pass || run.Questions[1].Pass || run.By != "sam" {
		t.Errorf("run %+v: want pass rate 0.5, the six-minute answer failed", run)
	}
	var raw map[string]any
	if err := env.State.View(t.Context(), func(tx broker.Tx) error {
		b, err := tx.GetState(retrieval.StateKey)
		if err == nil {
			err = json.Unmarshal(b, &raw)
		}
		return err
	}); err != nil || raw["runs"] == nil {
		t.Errorf("state %s: %v %v", retrieval.StateKey, raw, err)
	}
	recs := env.AuditRecords(t, "drill.retrieval")
	if len(recs) != 1 || recs[0].Actor != "sam" || recs[0].Outcome != broker.OutcomeError {
		t.Errorf("audit: %+v", recs)
	}
}

// TestShareRequestsLimited: one address may use share links at most
// ShareRequestsPerMinute times a minute.
func TestShareRequestsLimited(t *testing.T) {
	env := uitest.Start(t)
	f := env.Seed(t, 0)
	valid := createShare(t, as(t, env, "sam"), map[string]string{"kind": "session", "session_id": f.SSH})
	anon := client{env: env}
	for i := range web.ShareRequestsPerMinute {
		if st, _ := anon.do(t, "GET", web.SharePath(valid.Token)+"?format=jsonl", nil); st != http.StatusOK {
			t.Fatalf("use %d: %d, want 200", i, st)
		}
	}
	if st, _ := anon.do(t, "GET", web.SharePath(valid.Token)+"?format=jsonl", nil); st != http.StatusTooManyRequests {
		t.Fatalf("use %d in a minute: %d, want 429", web.ShareRequestsPerMinute+1, st)
	}
}

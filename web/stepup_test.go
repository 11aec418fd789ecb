package web_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/identity/passkeytest"
	"github.com/custos-pam/custos/web/ui/uitest"
)

// TestStepUpApproval: bob approves alice's request for demo-pg/admin,
// whose policy says step_up: passkey, over the API with a bearer token
// (as the CLI does). Without a step-up he is refused; a TOTP code is not
// enough; a passkey assertion for this request approves it; the same
// assertion on another request, or replayed, is refused.
func TestStepUpApproval(t *testing.T) {
	env := uitest.StartWith(t, uitest.Options{StepUp: "passkey"})
	x := &authzEnv{env: env}
	// A stale session cannot add a passkey; a fresh sign-in can.
	if st, b := signIn(t, x, approver, false).do(t, x, "POST", "/api/v1/passkeys/begin", nil); st != http.StatusForbidden || !strings.Contains(string(b), "step_up_required") {
		t.Fatalf("passkey registration on a session without a fresh sign-in: %d %s", st, b)
	}
	bob, key := withPasskey(t, x, "bob", approver)

	request := func() string {
		r, err := env.Access.Create(t.Context(), "alice", access.NewRequest{Target: "demo-pg", Role: "admin", Duration: time.Hour, Reason: "INC-7"})
		if err != nil {
			t.Fatal(err)
		}
		return r.ID
	}
	begin := func(id string) []byte { return assertFor(t, x, bob, key, "request.approve", id) }
	approve := func(id string, stepUp any) (int, string) {
		body := map[string]any{"comment": "ok"}
		if stepUp != nil {
			body["step_up"] = stepUp
		}
		st, b := bob.do(t, x, "POST", "/api/v1/requests/"+id+"/approve", body)
		return st, string(b)
	}
	refused := func(what string, st int, b string) {
		t.Helper()
		if st != http.StatusForbidden || !strings.Contains(b, "step_up_required") {
			t.Fatalf("%s: %d %s, want 403 step_up_required", what, st, b)
		}
	}

	rq1, rq2 := request(), request()
	st, body := approve(rq1, nil)
	refused("no step-up", st, body)
	if !strings.Contains(body, "passkey") {
		t.Errorf("the refusal does not say a passkey is needed: %s", body)
	}
	st, body = approve(rq1, map[string]string{"totp": uitest.TOTP()})
	refused("a TOTP code where a passkey is required", st, body)

	assertion := begin(rq1)
	st, body = approve(rq2, map[string]any{"assertion": json.RawMessage(assertion)})
	refused("the assertion for another request", st, body)

	assertion = begin(rq1)
	if st, body := approve(rq1, map[string]any{"assertion": json.RawMessage(assertion)}); st != http.StatusOK || !strings.Contains(body, `"state": "approved"`) {
		t.Fatalf("approval with a bound passkey assertion: %d %s", st, body)
	}
	st, body = approve(rq2, map[string]any{"assertion": json.RawMessage(assertion)})
	refused("the same assertion replayed on another request", st, body)

	// The refusals and the success are on the record.
	var ok, denied int
	for _, r := range env.AuditRecords(t, "auth.stepup") {
		if r.Actor != "bob" {
			continue
		}
		if r.Outcome == "success" {
			ok++
		} else {
			denied++
		}
	}
	if ok != 1 || denied != 3 {
		t.Errorf("auth.stepup records for bob: %d successes, %d refusals; want 1 and 3", ok, denied)
	}
}

// TestStepUpTerminate: with identity.step_up.terminate_session: any,
// security staff end a live session only with a fresh confirmation: none
// and a wrong code are refused, the current TOTP code works.
func TestStepUpTerminate(t *testing.T) {
	env := uitest.StartWith(t, uitest.Options{TerminateStepUp: "any"})
	x := &authzEnv{env: env, f: env.Seed(t, 0)}
	env.StartLive(t, x.f.Grant, "ses_live_stepup")
	sam := signIn(t, x, security, false)
	kill := func(stepUp any) (int, string) {
		body := map[string]any{"reason": "suspicious"}
		if stepUp != nil {
			body["step_up"] = stepUp
		}
		st, b := sam.do(t, x, "POST", "/api/v1/sessions/ses_live_stepup/kill", body)
		return st, string(b)
	}
	if st, b := kill(nil); st != http.StatusForbidden || !strings.Contains(b, "step_up_required") {
		t.Fatalf("without a step-up: %d %s", st, b)
	}
	if st, b := kill(map[string]string{"totp": "000000"}); st != http.StatusForbidden || !strings.Contains(b, "step_up_required") {
		t.Fatalf("with a wrong code: %d %s", st, b)
	}
	if st, b := kill(map[string]string{"totp": uitest.TOTP()}); st != http.StatusOK {
		t.Fatalf("with the current code: %d %s", st, b)
	}
}

// TestStepUpEvidence: with identity.step_up.export_evidence: any, the
// evidence download needs a step-up in the X-Custos-Step-Up header,
// bound to the session: none and a malformed one are refused, the
// current TOTP code works.
func TestStepUpEvidence(t *testing.T) {
	env := uitest.StartWith(t, uitest.Options{EvidenceStepUp: "any"})
	x := &authzEnv{env: env, f: env.Seed(t, 0)}
	env.Drain(t)
	sam := signIn(t, x, security, false)
	get := func(header string) (int, string) {
		req, err := http.NewRequestWithContext(t.Context(), "GET", env.URL+"/api/v1/sessions/"+x.f.SSH+"/evidence", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = sam.header(x)
		if header != "" {
			req.Header.Set("X-Custos-Step-Up", header)
		}
		res, err := sam.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b := make([]byte, 512)
		n, _ := res.Body.Read(b)
		return res.StatusCode, string(b[:n])
	}
	if st, b := get(""); st != http.StatusForbidden || !strings.Contains(b, "step_up_required") {
		t.Fatalf("without a step-up: %d %s", st, b)
	}
	if st, _ := get("not json"); st != http.StatusBadRequest {
		t.Fatalf("malformed header: %d", st)
	}
	if st, b := get(`{"totp":"` + uitest.TOTP() + `"}`); st != http.StatusOK {
		t.Fatalf("with the current code: %d %s", st, b)
	}
	var sd struct {
		EvidenceStepUp string `json:"evidence_step_up"`
	}
	if st, b := sam.do(t, x, "GET", "/api/v1/sessions/"+x.f.SSH, nil); st != http.StatusOK || json.Unmarshal(b, &sd) != nil || sd.EvidenceStepUp != "any" {
		t.Fatalf("session view: %d %s", st, b)
	}
}

// TestReviewAttestWithPasskey: an access review's attestation is signed
// by the shared ceremony, so a reviewer signs it with a passkey: one
// begun for another review is refused, the bound one attests with
// method passkey, and it is spent (replayed on the next review, refused).
func TestReviewAttestWithPasskey(t *testing.T) {
	env := uitest.Start(t)
	x := &authzEnv{env: env}
	sam, key := withPasskey(t, x, "sam", security)
	assertion := func(object string) json.RawMessage { return assertFor(t, x, sam, key, "signature", object) }
	start := func(name string) string {
		st, b := sam.do(t, x, "POST", "/api/v1/reviews", map[string]string{"name": name})
		var r struct{ ID string }
		if st != http.StatusCreated || json.Unmarshal(b, &r) != nil {
			t.Fatalf("start review: %d %s", st, b)
		}
		return r.ID
	}
	attest := func(id string, a json.RawMessage) (int, string) {
		st, b := sam.do(t, x, "POST", "/api/v1/reviews/"+id+"/attest", map[string]any{"meaning": "reviewed, no concerns", "passkey": a})
		return st, string(b)
	}
	r1 := start("Q1")
	if st, b := attest(r1, assertion("review:rev_another")); st != http.StatusForbidden || !strings.Contains(b, "step_up_required") {
		t.Fatalf("a passkey begun for another review: %d %s", st, b)
	}
	bound := assertion("review:" + r1)
	st, body := attest(r1, bound)
	if st != http.StatusOK || !strings.Contains(body, `"method": "passkey"`) || !strings.Contains(body, `"state": "attested"`) {
		t.Fatalf("attestation signed with a bound passkey: %d %s", st, body)
	}
	r2 := start("Q2")
	if st, b := attest(r2, bound); st != http.StatusForbidden || !strings.Contains(b, "already used") {
		t.Fatalf("the same assertion replayed: %d %s", st, b)
	}
}

// withPasskey signs user in freshly (a bearer token proven by password
// just now, as after custos login) and registers a software passkey for
// them over the API.
func withPasskey(t *testing.T, x *authzEnv, user, role string) (*caller, *passkeytest.Authenticator) {
	t.Helper()
	secret, _, err := x.env.Identity.Tokens().IssueProven(t.Context(), user, "api", "", time.Hour, "127.0.0.1", "password", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c := &caller{role: role, http: x.env.Client(), bearer: secret}
	key := passkeytest.New(x.env.LocalURL, "localhost")
	st, b := c.do(t, x, "POST", "/api/v1/passkeys/begin", nil)
	if st != http.StatusOK {
		t.Fatalf("begin registration: %d %s", st, b)
	}
	cred, err := key.Register(b)
	if err != nil {
		t.Fatal(err)
	}
	if st, b := c.do(t, x, "POST", "/api/v1/passkeys", map[string]any{"name": user + "'s key", "credential": json.RawMessage(cred)}); st != http.StatusCreated {
		t.Fatalf("register: %d %s", st, b)
	}
	return c, key
}

// assertFor begins a step-up as c for (action, object) and answers it
// with key.
func assertFor(t *testing.T, x *authzEnv, c *caller, key *passkeytest.Authenticator, action, object string) []byte {
	t.Helper()
	st, b := c.do(t, x, "POST", "/api/v1/stepup/begin", map[string]string{"action": action, "object_id": object})
	if st != http.StatusOK {
		t.Fatalf("step-up begin %s %s: %d %s", action, object, st, b)
	}
	a, err := key.Assert(b)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

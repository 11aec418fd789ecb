package web_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/custos-pam/custos/web"
	"github.com/custos-pam/custos/web/ui/uitest"
)

// TestUnmaskedAPI: GET /api/v1/unmasked lists the session of an unmask
// grant with the columns it returned in clear, when, its grant's
// approvers and its page; a session of the masked base role is not
// listed; requesters and approvers are refused; the window filters.
func TestUnmaskedAPI(t *testing.T) {
	env := uitest.Start(t)
	f := env.UnmaskedSessions(t)
	x := &authzEnv{env: env}
	sam := signIn(t, x, security, false)

	st, b := sam.do(t, x, "GET", "/api/v1/unmasked", nil)
	var list web.UnmaskedList
	if st != http.StatusOK || json.Unmarshal(b, &list) != nil {
		t.Fatalf("list: %d %s", st, b)
	}
	if slices.ContainsFunc(list.Sessions, func(s web.UnmaskedSession) bool { return s.SessionID == f.Masked }) {
		t.Fatalf("the masked session is listed: %s", b)
	}
	if len(list.Sessions) != 1 || list.Truncated {
		t.Fatalf("want the one unmask session: %s", b)
	}
	s := list.Sessions[0]
	if s.SessionID != f.Unmasked || s.GrantID != f.UnmaskGrant.ID || s.User != "alice" || s.Target != "demo-pg" || s.Role != "monitor-unmask" ||
		!slices.Equal(s.Unmasked, []string{"subject_id"}) || !slices.Equal(s.Approvers, []string{"bob"}) ||
		s.Link != "/ui/sessions/"+f.Unmasked || s.StartedAt.IsZero() || s.EndedAt.IsZero() || s.Reason == "" {
		t.Fatalf("unmask session: %+v", s)
	}
	if len(s.Columns) != 1 || s.Columns[0].Column != "public.subjects.subject_id" || s.Columns[0].Classification != "subject_id" ||
		s.Columns[0].FirstAt.Before(s.StartedAt) {
		t.Fatalf("columns shown in clear: %+v", s.Columns)
	}

	// The window: a period before the session lists nothing.
	before := s.StartedAt.Add(-time.Hour).Format(time.RFC3339)
	st, b = sam.do(t, x, "GET", "/api/v1/unmasked?since="+s.StartedAt.Add(-2*time.Hour).Format(time.RFC3339)+"&until="+before, nil)
	if st != http.StatusOK || json.Unmarshal(b, &list) != nil || len(list.Sessions) != 0 {
		t.Fatalf("earlier window: %d %s", st, b)
	}
	if st, b := sam.do(t, x, "GET", "/api/v1/unmasked?limit=0", nil); st != http.StatusBadRequest {
		t.Fatalf("limit 0: %d %s", st, b)
	}

	// Not for requesters, nor for the approver of the grant.
	for _, role := range []string{requester, approver} {
		if st, b := signIn(t, x, role, false).do(t, x, "GET", "/api/v1/unmasked", nil); st != http.StatusForbidden {
			t.Fatalf("%s: %d %s", role, st, b)
		}
	}
}

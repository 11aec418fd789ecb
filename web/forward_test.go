package web

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/custos-pam/custos/broker"
)

// owner is a stand-in for the replica running a session: it answers
// what it received, and echoes websocket messages.
func owner(t *testing.T) *httptest.Server {
	t.Helper()
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if websocket.IsWebSocketUpgrade(r) {
			c, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			_ = c.WriteJSON(map[string]string{"auth": r.Header.Get("Authorization"), "host": r.Host,
				"by": r.Header.Get(ForwardedHeader)})
			return
		}
		body, _ := io.ReadAll(r.Body)
		WriteJSON(w, http.StatusOK, map[string]string{"auth": r.Header.Get("Authorization"), "host": r.Host,
			"by": r.Header.Get(ForwardedHeader), "body": string(body), "path": r.URL.Path})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestForwarderDeclines(t *testing.T) {
	own := owner(t)
	const self = "https://replica-b.internal:8443"
	f := &Forwarder{Self: self}
	live := broker.Session{ID: "ses_1", State: broker.SessionLive, Replica: own.URL}
	for _, tc := range []struct {
		name      string
		s         broker.Session
		forwarded bool
	}{
		{name: "closed session", s: broker.Session{ID: "ses_1", State: broker.SessionClosed, Replica: own.URL}},
		{name: "no owner", s: broker.Session{ID: "ses_1", State: broker.SessionLive}},
		{name: "owned here", s: broker.Session{ID: "ses_1", State: broker.SessionLive, Replica: self + "/"}},
		{name: "not a URL", s: broker.Session{ID: "ses_1", State: broker.SessionLive, Replica: "file:///etc/passwd"}},
		// A request one replica forwarded is never forwarded again, so
		// two replicas cannot bounce it between them.
		{name: "already forwarded", s: live, forwarded: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/api/v1/sessions/ses_1/kill", nil)
			if tc.forwarded {
				r.Header.Set(ForwardedHeader, "https://replica-a.internal:8443")
			}
			w := httptest.NewRecorder()
			if f.Forward(w, r, tc.s) {
				t.Fatalf("forwarded: %d %s", w.Code, w.Body)
			}
			if w.Body.Len() != 0 {
				t.Fatalf("wrote %q while declining", w.Body)
			}
		})
	}
}

// TestForwarderPassesTheCaller: the owner gets the caller's own
// credentials, body and Host header, marked as forwarded by this replica;
// an unreachable owner is a 502 that says so.
func TestForwarderPassesTheCaller(t *testing.T) {
	own := owner(t)
	f := &Forwarder{Self: "https://replica-b.internal:8443"}
	s := broker.Session{ID: "ses_1", State: broker.SessionLive, Replica: own.URL}

	r := httptest.NewRequest(http.MethodPost, "https://custos.example.org/api/v1/sessions/ses_1/kill", strings.NewReader(`{"reason":"x"}`))
	r.Header.Set("Authorization", "Bearer secret-of-the-caller")
	w := httptest.NewRecorder()
	if !f.Forward(w, r, s) {
		t.Fatal("declined a live session of another replica")
	}
	var got map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || w.Code != http.StatusOK {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	want := map[string]string{"auth": "Bearer secret-of-the-caller", "host": "custos.example.org", "by": f.Self,
		"body": `{"reason":"x"}`, "path": "/api/v1/sessions/ses_1/kill"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("owner saw %s = %q, want %q", k, got[k], v)
		}
	}

	// The websocket of the live view goes through as well.
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !f.Forward(w, r, s) {
			http.Error(w, "declined", http.StatusTeapot)
		}
	}))
	defer front.Close()
	h := http.Header{}
	h.Set("Authorization", "Bearer secret-of-the-caller")
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(front.URL, "http")+"/ws/live?session=ses_1", h)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var m map[string]string
	if err := c.ReadJSON(&m); err != nil {
		t.Fatal(err)
	}
	if m["auth"] != "Bearer secret-of-the-caller" || m["by"] != f.Self || m["host"] != strings.TrimPrefix(front.URL, "http://") {
		t.Fatalf("owner's websocket saw %v", m)
	}

	own.Close()
	w = httptest.NewRecorder()
	r = httptest.NewRequest(http.MethodPost, "/api/v1/sessions/ses_1/kill", strings.NewReader(`{"reason":"x"}`))
	if !f.Forward(w, r, s) {
		t.Fatal("declined")
	}
	if w.Code != http.StatusBadGateway || !strings.Contains(w.Body.String(), "owner_unreachable") {
		t.Fatalf("owner down: %d %s", w.Code, w.Body)
	}
}

package webui_test

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/recorder"
	webui "github.com/custos-pam/custos/web/ui"
	"github.com/custos-pam/custos/web/ui/internal/vt"
	"github.com/custos-pam/custos/web/ui/uitest"
)

// The hub watches the recorder's running sessions.
var _ webui.LiveSource = (*recorder.Recorder)(nil)

// TestLiveWatchAndTerminate: a watcher joining a running session sees the
// screen as it is, then each keystroke within a second; a requester cannot
// terminate; security terminates with a reason, the watcher sees the end,
// and the termination is audited and recorded.
func TestLiveWatchAndTerminate(t *testing.T) {
	t.Parallel()
	env := uitest.Start(t)
	g := env.Grant(t, "alice", "demo-ssh", "ops", "bob")
	live := env.StartLive(t, g, "ses_live_1")
	if err := live.Type("whoami\r"); err != nil {
		t.Fatal(err)
	}
	sam, alice, dave := login(t, env, "sam"), login(t, env, "alice"), login(t, env, "dave")

	var rows []row
	sam.do("GET", "/api/v1/sessions?state=live&limit=500", nil, &rows)
	if len(rows) != 1 || rows[0].ID != live.ID || rows[0].State != "live" {
		t.Fatalf("live list: %+v", rows)
	}
	dave.do("GET", "/api/v1/sessions?state=live&limit=500", nil, &rows)
	if len(rows) != 0 {
		t.Fatalf("dave sees alice's live session: %+v", rows)
	}
	if _, res, err := dave.ws("/ws/live?session="+live.ID, env.URL); err == nil || res.StatusCode != http.StatusForbidden {
		t.Fatalf("dave watching alice: %v", err)
	}

	c, _, err := sam.ws("/ws/live?session="+live.ID, env.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	meta := readMsg(t, c, "meta", 5*time.Second)
	snap, _ := base64.StdEncoding.DecodeString(meta["data"].(string))
	screen := vt.New(int(meta["cols"].(float64)), int(meta["rows"].(float64)))
	screen.Write(snap)
	if !strings.Contains(screen.Text(), "$ whoami") {
		t.Fatalf("late watcher's screen:\n%s", screen.Text())
	}
	// Each keystroke's echo reaches the watcher in well under a second.
	// The keystroke (an input event) and its echo (output) may come in
	// one message or in two, so messages are read until the echo is there.
	for _, ch := range "ls -la" {
		sent := time.Now()
		if err := live.Type(string(ch)); err != nil {
			t.Fatal(err)
		}
		for echoed := false; !echoed; {
			ev := readMsg(t, c, "events", 2*time.Second)
			for _, e := range ev["events"].([]any) {
				m := e.(map[string]any)
				if m["k"] == "output" {
					d, _ := base64.StdEncoding.DecodeString(m["d"].(string))
					screen.Write(d)
					echoed = true
				}
			}
		}
		if lag := time.Since(sent); lag > time.Second {
			t.Fatalf("keystroke took %v to reach the watcher", lag)
		}
	}
	// An echo that came after the next keystroke's wait leaves the last
	// one still on its way.
	for deadline := time.Now().Add(2 * time.Second); !strings.Contains(screen.Text(), "$ ls -la") && time.Now().Before(deadline); {
		ev := readMsg(t, c, "events", time.Until(deadline))
		for _, e := range ev["events"].([]any) {
			if m := e.(map[string]any); m["k"] == "output" {
				d, _ := base64.StdEncoding.DecodeString(m["d"].(string))
				screen.Write(d)
			}
		}
	}
	if !strings.Contains(screen.Text(), "$ ls -la") {
		t.Fatalf("screen after typing:\n%s", screen.Text())
	}
	// Watching is audited as a view of the recording.
	var watched bool
	for _, r := range env.AuditRecords(t, "session.recording.read") {
		if r.Actor == "sam" && r.Reason == "live view" && strings.Contains(string(r.Details), live.ID) {
			watched = true
		}
	}
	if !watched {
		t.Fatal("live view not audited")
	}

	path := "/api/v1/sessions/" + live.ID + "/kill"
	if st := sam.do("POST", path, map[string]string{"reason": " "}, nil); st != http.StatusBadRequest {
		t.Fatalf("terminate without reason: %d", st)
	}
	if st := alice.do("POST", path, map[string]string{"reason": "mine"}, nil); st != http.StatusForbidden {
		t.Fatalf("requester terminating: %d", st)
	}
	if st := sam.do("POST", path, map[string]string{"reason": "unapproved change to prod"}, nil); st != http.StatusOK {
		t.Fatalf("terminate: %d", st)
	}
	end := readMsg(t, c, "end", 5*time.Second)
	if end["state"] != "terminated" || !strings.Contains(end["reason"].(string), "unapproved change to prod") {
		t.Fatalf("end: %v", end)
	}
	var ok, refused bool
	for _, r := range env.AuditRecords(t, "session.terminate") {
		ok = ok || r.Actor == "sam" && r.Outcome == broker.OutcomeSuccess && r.Reason == "unapproved change to prod"
		refused = refused || r.Actor == "alice" && r.Outcome == broker.OutcomeDenied
	}
	if !ok || !refused {
		t.Fatalf("terminations audited: success %v refusal %v", ok, refused)
	}
	env.Drain(t)
	s, err := envSession(t, env, live.ID)
	if err != nil || s.State != broker.SessionTerminated || !strings.Contains(s.EndReason, "unapproved change to prod") {
		t.Fatalf("session after terminate: %+v %v", s, err)
	}
	if st := sam.do("POST", path, map[string]string{"reason": "again"}, nil); st != http.StatusNotFound {
		t.Fatalf("terminating an ended session: %d", st)
	}
	// The sessions-terminated saved view lists it.
	var tbl struct {
		Rows [][]string `json:"rows"`
	}
	sam.do("GET", "/api/v1/audit/views/sessions-terminated", nil, &tbl)
	if len(tbl.Rows) != 1 || tbl.Rows[0][0] != live.ID {
		t.Fatalf("sessions terminated: %v", tbl.Rows)
	}
}

// TestHubDropsSlowWatcher: a watcher that stops reading is dropped; the
// recording never waits.
func TestHubDropsSlowWatcher(t *testing.T) {
	t.Parallel()
	env := uitest.Start(t)
	g := env.Grant(t, "alice", "demo-ssh", "ops", "bob")
	live := env.StartLive(t, g, "ses_live_slow")
	sam := login(t, env, "sam")
	c, _, err := sam.ws("/ws/live?session="+live.ID, env.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	readMsg(t, c, "meta", 5*time.Second)
	// Nobody reads c now; typing must not block.
	done := make(chan error, 1)
	go func() {
		for i := 0; i < 5000; i++ {
			if err := live.Type(strings.Repeat("x", 64)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("recording blocked on a slow watcher")
	}
	if err := live.Close(); err != nil {
		t.Fatal(err)
	}
}

package web_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/broker/store/sqlite"
	"github.com/custos-pam/custos/web"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// authEnv is the real identity service over SQLite, with the audit
// throttle, behind the web server on loopback.
type authEnv struct {
	st    broker.Store
	ids   *identity.Service
	th    *audit.Throttle
	clk   *clock
	url   string
	calls int
	// logs is the server's log, as JSON lines.
	logs *lockedBuffer
}

// lockedBuffer is a log sink safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newAuthEnv(t *testing.T) *authEnv {
	t.Helper()
	cfg, err := config.Parse([]byte("users:\n  - {name: alice, password: env:CUSTOS_TEST_ALICE_PW}\n"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("CUSTOS_TEST_ALICE_PW", "alice-pw")
	dir, err := identity.NewDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "custos.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &authEnv{st: st, clk: &clock{t: time.Now().UTC()}, logs: &lockedBuffer{}}
	log := audit.NewLog(st)
	e.th = audit.NewThrottle(log, audit.ThrottleOptions{Now: e.clk.Now})
	if e.ids, err = identity.NewService(identity.Options{Directory: dir, Store: st, Audit: log, Rejections: e.th, Now: e.clk.Now}); err != nil {
		t.Fatal(err)
	}
	srv := web.New(slog.New(slog.NewJSONHandler(e.logs, nil)), nil)
	whoami := func(w http.ResponseWriter, r *http.Request) {
		e.calls++
		p, _ := web.PrincipalFrom(r.Context())
		web.WriteJSON(w, http.StatusOK, map[string]string{"user": p.User})
	}
	srv.Handle("GET /api/v1/whoami", web.RequireToken(e.ids, whoami))
	srv.Handle("GET /api/v1/whoami/{id}", web.RequireToken(e.ids, whoami))
	// A page checking a session cookie, as the web UI does, relies on the
	// server putting the client address in every request's context.
	srv.HandleFunc("GET /page", func(w http.ResponseWriter, r *http.Request) {
		c, _ := r.Cookie("s")
		if _, err := e.ids.VerifyToken(r.Context(), c.Value, identity.KindWeb); err != nil {
			http.Error(w, "sign in", http.StatusUnauthorized)
		}
	})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	e.url = hs.URL
	return e
}

func (e *authEnv) get(t *testing.T, path string, set func(*http.Request)) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.url+path, nil)
	set(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// tokenRefusals returns the auth.token records, single and summaries.
func (e *authEnv) tokenRefusals(t *testing.T) (single []map[string]any, sums []map[string]any) {
	t.Helper()
	err := e.st.View(t.Context(), func(tx broker.Tx) error {
		recs, err := tx.ListAudit(broker.AuditFilter{ActionPrefix: "auth.token"})
		for _, r := range recs {
			var d map[string]any
			_ = json.Unmarshal(r.Details, &d)
			d["reason"] = r.Reason
			if d["summary"] == true {
				sums = append(sums, d)
			} else {
				single = append(single, d)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return single, sums
}

// TestRequireTokenFlood: a hundred API calls with made-up bearer tokens
// are all refused with 401, and leave five audit records naming the
// client address and, once the window closes, one summary of the other
// 95. A valid token still works in the middle of the flood.
func TestRequireTokenFlood(t *testing.T) {
	e := newAuthEnv(t)
	secret, _, err := e.ids.Login(t.Context(), "alice", "alice-pw", "", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		bogus := "cst_" + strings.Repeat(string(rune('A'+i%26)), 43)
		if code := e.get(t, "/api/v1/whoami", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+bogus) }); code != http.StatusUnauthorized {
			t.Fatalf("bogus token %d answered %d", i, code)
		}
		if i == 50 {
			if code := e.get(t, "/api/v1/whoami", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+secret) }); code != http.StatusOK {
				t.Fatalf("valid token during the flood answered %d", code)
			}
		}
	}
	if e.calls != 1 {
		t.Fatalf("the handler ran %d times, want once", e.calls)
	}
	single, sums := e.tokenRefusals(t)
	if len(single) != 5 || len(sums) != 0 {
		t.Fatalf("%d records and %d summaries during the window, want 5 and 0", len(single), len(sums))
	}
	for _, d := range single {
		if d["source"] != "127.0.0.1" || d["reason"] != "unknown token" || d["kind"] != "api" {
			t.Errorf("refusal record %v", d)
		}
	}
	e.clk.Add(time.Minute)
	if err := e.th.FlushClosed(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, sums = e.tokenRefusals(t)
	if len(sums) != 1 || sums[0]["suppressed"] != 95.0 || sums[0]["source"] != "127.0.0.1" {
		t.Fatalf("summaries %v, want one of 95 from 127.0.0.1", sums)
	}
}

// TestSourceOnEveryRequest: a token checked by any handler of the server
// (here a cookie, like the web UI's) is audited with the client address.
func TestSourceOnEveryRequest(t *testing.T) {
	e := newAuthEnv(t)
	if code := e.get(t, "/page", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "s", Value: "junk"}) }); code != http.StatusUnauthorized {
		t.Fatalf("junk cookie answered %d", code)
	}
	single, _ := e.tokenRefusals(t)
	if len(single) != 1 || single[0]["source"] != "127.0.0.1" || single[0]["kind"] != "web" {
		t.Fatalf("records %v", single)
	}
}

package web_test

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/broker/proxytrust"
	"github.com/custos-pam/custos/broker/store/sqlite"
	"github.com/custos-pam/custos/web"
)

func TestClientAddrForwarded(t *testing.T) {
	trusted, err := proxytrust.Parse([]string{"10.0.0.0/8", "2001:db8:1::/48"})
	if err != nil {
		t.Fatal(err)
	}
	const xff, fwd = web.HeaderXForwardedFor, web.HeaderForwarded
	for _, tc := range []struct {
		name, peer, header string
		values             []string // header values (one line each)
		other              []string // values of the header not configured
		want               string
	}{
		{"untrusted peer's header is ignored", "192.0.2.50:4000", xff, []string{"198.51.100.1"}, nil, "192.0.2.50:4000"},
		{"untrusted peer's Forwarded is ignored", "192.0.2.50:4000", fwd, []string{"for=198.51.100.1"}, nil, "192.0.2.50:4000"},
		{"trusted proxy, one hop", "10.0.0.2:4000", xff, []string{"198.51.100.1"}, nil, "198.51.100.1:0"},
		{"trusted proxy without a header", "10.0.0.2:4000", xff, nil, nil, "10.0.0.2:4000"},
		{"spoofed left-most entries", "10.0.0.2:4000", xff, []string{"127.0.0.1, 10.9.9.9, 198.51.100.1"}, nil, "198.51.100.1:0"},
		{"spoofed entries on a header line of their own", "10.0.0.2:4000", xff, []string{"203.0.113.66", "198.51.100.1"}, nil, "198.51.100.1:0"},
		{"chain of trusted proxies", "10.0.0.2:4000", xff, []string{"198.51.100.1, 10.1.1.1, 10.2.2.2"}, nil, "198.51.100.1:0"},
		{"all trusted: the left-most", "10.0.0.2:4000", xff, []string{"10.3.3.3, 10.1.1.1"}, nil, "10.3.3.3:0"},
		{"garbage right-most: the proxy", "10.0.0.2:4000", xff, []string{"198.51.100.1, not-an-address"}, nil, "10.0.0.2:4000"},
		{"garbage behind a trusted hop: that hop", "10.0.0.2:4000", xff, []string{"junk, 10.1.1.1"}, nil, "10.1.1.1:0"},
		{"entry with a port", "10.0.0.2:4000", xff, []string{"198.51.100.1:5555"}, nil, "198.51.100.1:5555"},
		{"ipv6 entry", "[2001:db8:1::5]:443", xff, []string{"2001:db8:2::7"}, nil, "[2001:db8:2::7]:0"},
		{"zone is not an address", "10.0.0.2:4000", xff, []string{"fe80::1%eth0"}, nil, "10.0.0.2:4000"},
		{"mapped ipv4 entry", "10.0.0.2:4000", xff, []string{"::ffff:198.51.100.1"}, nil, "198.51.100.1:0"},
		{"the other header is not read", "10.0.0.2:4000", xff, nil, []string{"for=198.51.100.1"}, "10.0.0.2:4000"},
		{"Forwarded", "10.0.0.2:4000", fwd, []string{`for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"`}, nil, "[2001:db8:cafe::17]:4711"},
		{"Forwarded spoofed left", "10.0.0.2:4000", fwd, []string{"for=127.0.0.1", "For=198.51.100.1;proto=https"}, nil, "198.51.100.1:0"},
		{"Forwarded unknown", "10.0.0.2:4000", fwd, []string{"for=unknown"}, nil, "10.0.0.2:4000"},
		{"Forwarded element without for", "10.0.0.2:4000", fwd, []string{"for=198.51.100.1, proto=https"}, nil, "10.0.0.2:4000"},
		{"X-Forwarded-For ignored when Forwarded is configured", "10.0.0.2:4000", fwd, nil, []string{"198.51.100.1"}, "10.0.0.2:4000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tc.peer
			other := xff
			if tc.header == xff {
				other = fwd
			}
			for _, v := range tc.values {
				r.Header.Add(tc.header, v)
			}
			for _, v := range tc.other {
				r.Header.Add(other, v)
			}
			if got := web.ClientAddr(trusted, tc.header, r); got != tc.want {
				t.Fatalf("ClientAddr = %s, want %s", got, tc.want)
			}
		})
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "10.0.0.2:4000"
	r.Header.Set(xff, "198.51.100.1")
	if got := web.ClientAddr(proxytrust.Set{}, xff, r); got != r.RemoteAddr {
		t.Fatalf("no trusted proxies: ClientAddr = %s", got)
	}
}

// signInServer is the web server in front of the real identity service
// (SQLite, audit log, throttle), trusting the given proxies, with a
// sign-in route that passes web.ClientIP as the source, as the API does.
func signInServer(t *testing.T, trusted ...string) (url string, st broker.Store) {
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
	st, err = sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "custos.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := audit.NewLog(st)
	ids, err := identity.NewService(identity.Options{Auth: cfg.Auth, Directory: dir, Store: st, Audit: log,
		Rejections: audit.NewThrottle(log, audit.ThrottleOptions{})})
	if err != nil {
		t.Fatal(err)
	}
	srv := web.New(slog.New(slog.NewJSONHandler(io.Discard, nil)), nil)
	set, err := proxytrust.Parse(trusted)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.TrustProxies(set, "x-forwarded-for"); err != nil {
		t.Fatal(err)
	}
	srv.HandleFunc("POST /signin", func(w http.ResponseWriter, r *http.Request) {
		_, _, err := ids.Login(r.Context(), r.FormValue("user"), r.FormValue("password"), "", web.ClientIP(r))
		var e *identity.Error
		switch {
		case err == nil:
			w.WriteHeader(http.StatusOK)
		case errors.As(err, &e) && e.Code == identity.CodeTooManyAttempts:
			w.WriteHeader(http.StatusTooManyRequests)
		default:
			w.WriteHeader(http.StatusUnauthorized)
		}
	})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs.URL, st
}

func forwardedSignIn(t *testing.T, url, user, password, xff string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/signin",
		strings.NewReader("user="+user+"&password="+password))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestForwardedSignInLimits is the load balancer's case: every request
// comes from the balancer's address (loopback here). Trusted, its
// X-Forwarded-For names the client, so one client's failed sign-ins
// lock out that client and not everyone behind the balancer, and a
// client cannot escape its limit by prepending made-up addresses. Not
// trusted, the header is ignored and cannot pick the counted address.
func TestForwardedSignInLimits(t *testing.T) {
	const max = 5 // auth.max_failures' default
	url, st := signInServer(t, "127.0.0.1")
	for i := range max {
		// A different user name each time: only the address limit bites;
		// made-up left-most entries do not move the count elsewhere.
		if code := forwardedSignIn(t, url, fmt.Sprintf("guess%d", i), "wrong", fmt.Sprintf("192.0.2.%d, 198.51.100.1", i+1)); code != http.StatusUnauthorized {
			t.Fatalf("failure %d answered %d", i, code)
		}
	}
	if code := forwardedSignIn(t, url, "guess-next", "wrong", "203.0.113.5, 198.51.100.1"); code != http.StatusTooManyRequests {
		t.Fatalf("198.51.100.1 past its limit answered %d, want 429", code)
	}
	if code := forwardedSignIn(t, url, "alice", "alice-pw", "198.51.100.2"); code != http.StatusOK {
		t.Fatalf("another client behind the same balancer answered %d, want 200", code)
	}
	var sources []string
	if err := st.View(t.Context(), func(tx broker.Tx) error {
		recs, err := tx.ListAudit(broker.AuditFilter{ActionPrefix: "auth.login"})
		for _, r := range recs {
			if r.Outcome == broker.OutcomeDenied && strings.HasPrefix(r.Actor, "guess") && !strings.Contains(string(r.Details), "198.51.100.1") {
				sources = append(sources, string(r.Details))
			}
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(sources) != 0 {
		t.Fatalf("sign-in failures audited without the forwarded client address: %v", sources)
	}

	// Untrusted peer: X-Forwarded-For cannot spread failures over made-up
	// addresses; they all count against the real one.
	url, _ = signInServer(t, "10.0.0.0/8")
	for i := range max {
		if code := forwardedSignIn(t, url, fmt.Sprintf("guess%d", i), "wrong", fmt.Sprintf("198.51.100.%d", 10+i)); code != http.StatusUnauthorized {
			t.Fatalf("failure %d answered %d", i, code)
		}
	}
	if code := forwardedSignIn(t, url, "alice", "alice-pw", "198.51.100.99"); code != http.StatusTooManyRequests {
		t.Fatalf("an untrusted peer escaped its limit with X-Forwarded-For: %d", code)
	}
}

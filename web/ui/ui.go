// Package webui is the broker's browser interface for security staff,
// auditors, approvers and requesters: sign-in with secure cookie sessions,
// requests and approvals, the session list with search, terminal and
// PostgreSQL replay, live watching with terminate, per-session
// verification with an evidence bundle, and the audit log's saved views.
// Pages are static assets embedded in the binary (the terminal renderer,
// xterm.js, is copied in by the build); their data comes from the one
// JSON API under /api/v1 (package web), with the session cookie, and over
// the websockets under /ws served here. Custodians request, confirm (with
// a fresh second factor) and close break-glass unseals and see drill
// standing. Nothing from a recording is ever interpreted as markup: the
// scripts set text only, and the Content-Security-Policy forbids inline
// code.
package webui

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/recorder"
	"github.com/custos-pam/custos/web"
)

//go:embed static templates
var assets embed.FS

// recordings opens stored recordings for replay; *recorder.Recorder
// implements it. Open audits every read.
type recordings interface {
	Open(ctx context.Context, sessionID string, a recorder.Access) (*recorder.Recording, error)
}

// auditor appends to the audit log; *audit.Log implements it.
type auditor interface {
	Append(ctx context.Context, e audit.Entry) (broker.AuditRecord, error)
}

// Options configure the UI. API and Audit are required.
type Options struct {
	// API is the JSON API the pages call; its gate authenticates the
	// pages and websockets, and its access rules decide who sees what.
	API   *web.API
	Audit auditor
	// Recordings serves replay. Default: nil, and replay answers 503.
	Recordings recordings
	// Live lets watchers follow running sessions (NewHub over the
	// recorder). Default: nil, and the live view lists sessions without
	// a picture.
	Live *Hub
	// InsecureCookies drops HSTS, for a broker served over plain HTTP on
	// loopback. Default: false.
	InsecureCookies bool
	// Log defaults to slog.Default().
	Log *slog.Logger
}

// UI serves the web interface. Build it with New and add its routes to a
// web.Server with Register.
type UI struct {
	o       Options
	log     *slog.Logger
	gate    *web.Gate
	pages   *template.Template
	static  fs.FS
	xterm   bool
	indexes *indexCache
}

// New returns a UI.
func New(o Options) (*UI, error) {
	if o.API == nil || o.Audit == nil {
		return nil, errors.New("webui: API and Audit are required")
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	pages, err := template.ParseFS(assets, "templates/*.html")
	if err != nil {
		return nil, errors.New("webui: templates: " + err.Error())
	}
	static, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, errors.New("webui: static assets: " + err.Error())
	}
	u := &UI{o: o, log: o.Log.With("component", "webui"), gate: o.API.Gate(), pages: pages, static: static,
		indexes: newIndexCache(8)}
	if _, err := fs.Stat(static, "vendor/xterm.mjs"); err == nil {
		u.xterm = true
	} else {
		u.log.Warn("webui: xterm.js is not built in; terminal replay falls back to plain text (run make build)")
	}
	return u, nil
}

// XtermAvailable reports whether the terminal renderer was built into the
// binary.
func (u *UI) XtermAvailable() bool { return u.xterm }

// page names and titles; every page is the same shell, the script renders
// the body for data-page.
var pageTitles = map[string]string{
	"login": "Sign in", "requests": "Requests", "sessions": "Sessions", "replay": "Replay",
	"live": "Live sessions", "watch": "Live session", "verify": "Verify", "audit": "Audit log",
	"breakglass": "Break-glass", "evidence": "Evidence", "reviews": "Access reviews", "dashboard": "Dashboard", "security": "Security keys",
}

// Register adds the UI's routes to s: pages under /ui/, the websockets
// under /ws/, and a redirect from /. The data the pages show comes from
// the API under /api/v1.
func (u *UI) Register(s *web.Server) {
	h := func(pattern string, f http.HandlerFunc) { s.Handle(pattern, u.secure(f)) }
	h("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/sessions", http.StatusSeeOther)
	})
	h("GET /ui/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/sessions", http.StatusSeeOther)
	})
	h("GET /ui/login", u.page("login", false))
	h("GET /ui/requests", u.page("requests", true))
	h("GET /ui/requests/{id}", u.page("requests", true)) // the link in Slack messages
	h("GET /ui/sessions", u.page("sessions", true))
	h("GET /ui/sessions/{id}", u.page("replay", true))
	h("GET /ui/live", u.page("live", true))
	h("GET /ui/live/{id}", u.page("watch", true))
	h("GET /ui/verify/{id}", u.page("verify", true))
	h("GET /ui/audit", u.page("audit", true))
	h("GET /ui/evidence", u.page("evidence", true))
	h("GET /ui/breakglass", u.page("breakglass", true))
	h("GET /ui/dashboard", u.page("dashboard", true))
	h("GET /ui/security", u.page("security", true))
	h("GET "+unsealPages+"{id}", u.page("breakglass", true)) // the link in Slack notices
	h("GET /ui/reviews", u.page("reviews", true))
	h("GET /ui/reviews/{id}", u.page("reviews", true))
	s.Handle("GET /ui/static/", u.secure(u.staticFiles()))

	s.Handle("GET /ws/replay", u.secure(u.gate.Require(u.wsReplay)))
	s.Handle("GET /ws/live", u.secure(u.gate.Require(u.wsLive)))
}

// UnsealPath is the web UI page of one unseal request, where custodians
// review it and confirm with a fresh second factor. Slack's security
// notice links to it.
func UnsealPath(id string) string { return unsealPages + url.PathEscape(id) }

// unsealPages is where the pages of unseal requests live.
const unsealPages = "/ui/breakglass/unseals/"

// secure sets the security headers every UI response carries.
func (u *UI) secure(next http.Handler) http.Handler {
	return web.SecureHeaders(!u.o.InsecureCookies, next)
}

type pageData struct {
	Page, Title string
	Xterm       bool
}

// page serves the HTML shell of a page; pages that need a signed-in user
// redirect to the sign-in page without one.
func (u *UI) page(name string, auth bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if auth {
			if _, err := u.gate.Cookie(r); err != nil {
				http.Redirect(w, r, "/ui/login?next="+url.QueryEscape(r.URL.Path), http.StatusSeeOther)
				return
			}
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		err := u.pages.ExecuteTemplate(w, "page.html", pageData{Page: name, Title: pageTitles[name],
			Xterm: u.xterm && (name == "replay" || name == "watch")})
		if err != nil {
			u.log.Error("webui: render page", "page", name, "err", err)
		}
	}
}

func (u *UI) staticFiles() http.Handler {
	fsrv := http.StripPrefix("/ui/static/", http.FileServerFS(u.static))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		fsrv.ServeHTTP(w, r)
	})
}

// fail answers an error from a broker service.
func (u *UI) fail(w http.ResponseWriter, err error) { u.o.API.Fail(w, err) }

// sameOrigin reports whether a browser request comes from the UI's own
// origin.
func (u *UI) sameOrigin(r *http.Request) bool { return u.gate.SameOrigin(r) }

// principalFrom returns the caller the gate authenticated.
func principalFrom(ctx context.Context) web.Principal {
	p, _ := web.PrincipalFrom(ctx)
	return p
}

// authorize loads session id for action by the caller (under the access
// rules, which audit a refusal) and writes the error response when it
// cannot be shown.
func (u *UI) authorize(w http.ResponseWriter, r *http.Request, id string, action access.Action, purpose string) (broker.Session, bool) {
	s, err := u.o.API.Session(r, id, action, purpose)
	if err != nil {
		u.fail(w, err)
		return s, false
	}
	return s, true
}

// row is the session as the API's lists show it.
func (u *UI) row(s broker.Session) web.SessionRow { return u.o.API.Row(s) }

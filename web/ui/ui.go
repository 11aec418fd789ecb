// Package webui is the broker's browser interface for security staff,
// auditors, approvers and requesters: sign-in with secure cookie sessions,
// requests and approvals, the session list with search, terminal and
// PostgreSQL replay, live watching with terminate, per-session
// verification with an evidence bundle, and the audit log's saved views.
// Pages are static assets embedded in the binary (the terminal renderer,
// xterm.js, is copied in by the build); data flows as JSON under /ui/api
// and over websockets under /ws. Custodians request, confirm (with a
// fresh second factor) and close break-glass unseals and see drill
// standing. Nothing from a recording is ever
// interpreted as markup: the scripts set text only, and the
// Content-Security-Policy forbids inline code.
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
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/breakglass"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/recorder"
	"github.com/custos-pam/custos/web"
)

//go:embed static templates
var assets embed.FS

// tokenIssuer issues browser session tokens; identity.Service's Tokens()
// implements it.
type tokenIssuer interface {
	Issue(ctx context.Context, user, kind, target string, ttl time.Duration, source string) (string, broker.Token, error)
}

// recordings reads and verifies stored recordings; *recorder.Recorder
// implements it. Open audits every read.
type recordings interface {
	Open(ctx context.Context, sessionID string, a recorder.Access) (*recorder.Recording, error)
	Verify(ctx context.Context, sessionID string) (*recorder.VerifyReport, error)
	ManifestFile(ctx context.Context, sessionID string) ([]byte, error)
}

// terminator ends a live session by id and reports whether it was found;
// the proxies implement it.
type terminator interface {
	Terminate(sessionID, reason string) bool
}

// auditor appends to the audit log; *audit.Log implements it.
type auditor interface {
	Append(ctx context.Context, e audit.Entry) (broker.AuditRecord, error)
}

// Options configure the UI. Auth, Tokens, Access, Store, Audit and Config
// are required.
type Options struct {
	// Auth checks passwords and second factors and verifies session
	// tokens; identity.Service implements it.
	Auth web.Authenticator
	// Tokens issues the "web" tokens behind session cookies.
	Tokens tokenIssuer
	Access *access.Service
	Store  broker.Store
	Audit  auditor
	// Config lists the targets and roles offered in the request form.
	Config *config.Config
	// Recordings serves replay, verification and evidence. Default: nil,
	// and those pages answer 503.
	Recordings recordings
	// Live lets watchers follow running sessions (NewHub over the
	// recorder). Default: nil, and the live view lists sessions without
	// a picture.
	Live *Hub
	// Terminator ends live sessions. Default: nil, Terminate answers 503.
	Terminator terminator
	// BreakGlass serves the break-glass page; *breakglass.Service
	// implements it. Default: nil, and the page says no account is
	// configured.
	BreakGlass breakGlass
	// PublicURL is the broker's external URL; its origin is accepted on
	// state changes and websocket upgrades besides the request's own
	// host. Default: empty, same host only.
	PublicURL string
	// SessionTTL is how long a sign-in lasts. Default: 8h.
	SessionTTL time.Duration
	// InsecureCookies drops the Secure attribute from cookies, for a
	// broker served over plain HTTP on loopback. Default: false.
	InsecureCookies bool
	// Log defaults to slog.Default().
	Log *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

// UI serves the web interface. Build it with New and add its routes to a
// web.Server with Register.
type UI struct {
	o       Options
	log     *slog.Logger
	pages   *template.Template
	static  fs.FS
	xterm   bool
	origin  string
	indexes *indexCache
	verify  *verifyCache
}

// New returns a UI.
func New(o Options) (*UI, error) {
	if o.Auth == nil || o.Tokens == nil || o.Access == nil || o.Store == nil || o.Audit == nil || o.Config == nil {
		return nil, errors.New("webui: Auth, Tokens, Access, Store, Audit and Config are required")
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = 8 * time.Hour
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	pages, err := template.ParseFS(assets, "templates/*.html")
	if err != nil {
		return nil, errors.New("webui: templates: " + err.Error())
	}
	static, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, errors.New("webui: static assets: " + err.Error())
	}
	u := &UI{o: o, log: o.Log.With("component", "webui"), pages: pages, static: static,
		indexes: newIndexCache(8), verify: newVerifyCache()}
	if _, err := fs.Stat(static, "vendor/xterm.mjs"); err == nil {
		u.xterm = true
	} else {
		u.log.Warn("webui: xterm.js is not built in; terminal replay falls back to plain text (run make build)")
	}
	if o.PublicURL != "" {
		if pu, err := url.Parse(o.PublicURL); err == nil && pu.Host != "" {
			u.origin = pu.Scheme + "://" + pu.Host
		}
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
	"breakglass": "Break-glass",
}

// Register adds the UI's routes to s: pages under /ui/, JSON under
// /ui/api/, websockets under /ws/, and a redirect from /.
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
	h("GET /ui/breakglass", u.page("breakglass", true))
	h("GET "+unsealPages+"{id}", u.page("breakglass", true)) // the link in Slack notices
	s.Handle("GET /ui/static/", u.secure(u.staticFiles()))

	h("POST /ui/api/login", u.login)
	h("POST /ui/api/logout", u.user(u.logout))
	h("GET /ui/api/me", u.user(u.me))
	h("GET /ui/api/targets", u.user(u.targets))
	h("GET /ui/api/requests", u.user(u.listRequests))
	h("POST /ui/api/requests", u.user(u.createRequest))
	h("POST /ui/api/requests/{id}/approve", u.user(u.decide(true)))
	h("POST /ui/api/requests/{id}/deny", u.user(u.decide(false)))
	h("POST /ui/api/requests/{id}/cancel", u.user(u.cancel))
	h("GET /ui/api/grants", u.user(u.listGrants))
	h("POST /ui/api/grants/{id}/revoke", u.user(u.revoke))
	h("GET /ui/api/sessions", u.user(u.listSessions))
	h("GET /ui/api/sessions/{id}", u.user(u.getSession))
	h("GET /ui/api/sessions/{id}/verify", u.user(u.verifySession))
	h("GET /ui/api/sessions/{id}/evidence", u.user(u.evidence))
	h("POST /ui/api/sessions/{id}/terminate", u.user(u.terminate))
	h("GET /ui/api/live", u.user(u.listLive))
	h("GET /ui/api/audit", u.user(u.admin(u.auditList)))
	h("GET /ui/api/audit/verify", u.user(u.admin(u.auditVerify)))
	h("GET /ui/api/audit/views", u.user(u.admin(u.auditViews)))
	h("GET /ui/api/audit/views/{view}", u.user(u.admin(u.auditView)))
	h("GET /ui/api/breakglass", u.user(u.withBreakGlass(u.listBreakGlass)))
	h("POST /ui/api/breakglass/{account}/unseal", u.user(u.withBreakGlass(u.unsealBreakGlass)))
	h("POST /ui/api/breakglass/{account}/close", u.user(u.withBreakGlass(u.closeBreakGlass)))
	h("POST /ui/api/breakglass/unseals/{id}/confirm", u.user(u.withBreakGlass(u.confirmUnseal)))

	h("GET /ws/replay", u.user(u.wsReplay))
	h("GET /ws/live", u.user(u.wsLive))
}

// csp forbids inline scripts and styles, plugins, framing and foreign
// connections.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"font-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// secure sets the security headers every UI response carries.
func (u *UI) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", csp)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
		if !u.o.InsecureCookies {
			hd.Set("Strict-Transport-Security", "max-age=31536000")
		}
		next.ServeHTTP(w, r)
	})
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
			if _, err := u.principal(r); err != nil {
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
func (u *UI) fail(w http.ResponseWriter, err error) {
	if e, ok := access.AsError(err); ok {
		web.WriteError(w, e.Status, e.Code, e.Message)
		return
	}
	if e, ok := breakglass.AsError(err); ok {
		web.WriteError(w, e.Status, e.Code, e.Message)
		return
	}
	u.log.Error("webui: request failed", "err", err)
	web.WriteError(w, http.StatusInternalServerError, "internal", "internal error")
}

// audit appends an entry; a failure is logged, never shown.
func (u *UI) audit(ctx context.Context, e audit.Entry) {
	if _, err := u.o.Audit.Append(ctx, e); err != nil {
		u.log.Error("webui: audit append failed", "action", e.Action, "err", err)
	}
}

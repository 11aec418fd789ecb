package web

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/breakglass"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/sshca"
	"github.com/custos-pam/custos/recorder"
)

// tokenIssuer issues the "web" tokens behind session cookies;
// identity.Service's Tokens() implements it.
type tokenIssuer interface {
	// IssueProven issues a token that carries how (method) and when (at)
	// its holder authenticated.
	IssueProven(ctx context.Context, user, kind, target string, ttl time.Duration, source, method string, at time.Time) (string, broker.Token, error)
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

// liveSessions says which sessions can be watched on this broker.
type liveSessions interface {
	Has(sessionID string) bool
}

// auditor appends to the audit log; *audit.Log implements it.
type auditor interface {
	Append(ctx context.Context, e audit.Entry) (broker.AuditRecord, error)
}

// dbTokens issues database connection tokens; broker/dbtoken implements it.
type dbTokens interface {
	Issue(ctx context.Context, user, target, role, source string) (string, broker.Token, broker.Grant, error)
}

// breakGlass runs break-glass accounts; *breakglass.Service implements
// it. The service decides who may see and do what (through the access
// rules); the API only carries the caller and their second factor to it.
type breakGlass interface {
	List(ctx context.Context, actor string) ([]breakglass.AccountView, error)
	Status(ctx context.Context, actor, name string) (breakglass.AccountView, error)
	Unseal(ctx context.Context, actor string, in breakglass.UnsealRequest) (breakglass.Unseal, error)
	Confirm(ctx context.Context, actor, unsealID string, f breakglass.Factor) (breakglass.Unseal, error)
	Close(ctx context.Context, actor, name, reason string) (breakglass.AccountView, error)
	Reveal(ctx context.Context, actor, name string, f breakglass.Factor) (breakglass.Secret, error)
	ReportOutOfBand(ctx context.Context, actor, name, incident, details string) (breakglass.AccountView, error)
	DrillStatuses(ctx context.Context, actor string) ([]breakglass.DrillStatus, error)
	StartDrill(ctx context.Context, actor, name string, f breakglass.Factor) (breakglass.Drill, error)
	GetDrill(ctx context.Context, actor, id string) (breakglass.Drill, error)
	DrillReport(ctx context.Context, actor, quarter string) (breakglass.Report, error)
}

// Options configure the API. Auth, Access, Store, Audit and Config are
// required; a missing optional part makes its routes answer 503 (or 404
// for break-glass) instead of leaving them out, so every broker serves
// the same routes.
type Options struct {
	Auth Authenticator
	// Tokens issues the web UI's session tokens. Default: nil, and
	// cookie sign-in answers 503.
	Tokens tokenIssuer
	Access *access.Service
	Store  broker.Store
	Audit  auditor
	Config *config.Config
	// LiveConfig, when set, is where targets are read on each call, so a
	// config reload applies. Default: Config, fixed.
	LiveConfig *config.Live
	// Recordings serves verification, export and evidence.
	Recordings recordings
	// Terminator ends live sessions.
	Terminator terminator
	// Holds are the statements guardrails hold for approval. Default: nil
	// (no holds listed).
	Holds holdStore
	// Live says which running sessions can be watched. Default: none.
	Live liveSessions
	// Forwarder hands the live view and termination of sessions another
	// replica runs to that replica. Default: nil, only this broker's own
	// sessions can be watched and terminated here.
	Forwarder *Forwarder
	// AuditVerifier checks the chain for GET /api/v1/audit/verify, with
	// the signed checkpoints. Default: nil, the chain in Store alone
	// (audit.Verify).
	AuditVerifier interface {
		Verify(ctx context.Context) (audit.Report, error)
	}
	// Users lists every user for security admins (GET /api/v1/users).
	// Default: nil, and the route answers 503 users_unavailable.
	Users userDirectory
	// SSO signs users in with an OpenID Provider. Default: nil, and the
	// SSO routes answer 404 sso_disabled.
	SSO singleSignOn
	// StepUp verifies step-ups bound to actions (POST
	// /api/v1/stepup/begin and the step_up field of sensitive actions).
	// Default: nil, step-ups answer 503 and actions whose policy needs one
	// are refused.
	StepUp stepUpVerifier
	// Passkeys serves /api/v1/passkeys. Default: nil, 503.
	Passkeys passkeyRegistry
	// TOTP enrols TOTP secrets kept in the store (/api/v1/totp).
	// Default: nil, 503.
	TOTP totpEnroller
	// BreakGlass serves /api/v1/breakglass and /api/v1/drills.
	BreakGlass breakGlass
	// Reviews serves /api/v1/reviews. Default: nil, and those routes
	// answer 503.
	Reviews reviews
	// Indicators serves /api/v1/indicators (the risk dashboard).
	Indicators indicators
	// Signatures lists signature meanings. Default: nil, the config's.
	Signatures signatures
	// DBTokens issues PostgreSQL connection tokens; DBHost and DBPort
	// are where clients reach the PostgreSQL proxy.
	DBTokens       dbTokens
	DBHost, DBPort string
	// SSHCA signs short-lived SSH user certificates for SSHCertTTL.
	SSHCA      *sshca.CA
	SSHCertTTL time.Duration
	// SSHHost and SSHPort are where clients reach the SSH proxy, and
	// SSHHostKey its host key, told with each certificate so the CLI
	// can write ssh_config and known_hosts. Default: none (no SSH proxy).
	SSHHost, SSHPort string
	SSHHostKey       ssh.PublicKey
	// PublicURL is the broker's external URL; its origin is accepted on
	// cookie sessions' state changes besides the request's own host.
	PublicURL string
	// SessionTTL is how long a web sign-in lasts. Default: 8h.
	SessionTTL time.Duration
	// InsecureCookies drops the Secure attribute from cookies (and
	// HSTS), for a broker served over plain HTTP on loopback.
	InsecureCookies bool
	// Log defaults to slog.Default().
	Log *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

// API is the broker's one JSON API under /api/v1, for the CLI (bearer
// tokens) and the web UI (session cookie) alike.
type API struct {
	o      Options
	log    *slog.Logger
	gate   *Gate
	verify *verifyCache
	// shareAudit records share links' creation, uses and revocation in
	// the transaction that changes them.
	shareAudit txAppender
}

// NewAPI returns the API.
func NewAPI(o Options) (*API, error) {
	if o.Auth == nil || o.Access == nil || o.Store == nil || o.Audit == nil || o.Config == nil {
		return nil, errors.New("web: api: Auth, Access, Store, Audit and Config are required")
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
	return &API{o: o, log: o.Log.With("component", "api"), gate: NewGate(o.Auth, o.Access.IsSecurityAdmin, o.PublicURL),
		verify: newVerifyCache(), shareAudit: shareAppender(o)}, nil
}

// Gate is the API's authentication, for the UI's pages and websockets.
func (a *API) Gate() *Gate { return a.gate }

// Secure wraps h with the API's security headers.
func (a *API) Secure(h http.Handler) http.Handler { return SecureHeaders(!a.o.InsecureCookies, h) }

// Register adds every API route to s.
func (a *API) Register(s *Server) {
	open := func(pattern string, h http.HandlerFunc) { s.Handle(pattern, a.Secure(h)) }
	auth := func(pattern string, h http.HandlerFunc) { s.Handle(pattern, a.Secure(a.gate.Require(h))) }

	open("GET /api/v1/openapi.json", a.openAPI)
	open("POST /api/v1/login", a.login)
	open("POST /api/v1/session", a.signIn)
	auth("DELETE /api/v1/session", a.signOut)
	auth("GET /api/v1/whoami", a.whoami)
	open("GET /api/v1/auth/sso", a.ssoInfo)
	open("POST /api/v1/auth/sso/start", a.ssoStart)
	open("POST /api/v1/auth/sso/token", a.ssoToken)
	open("POST /api/v1/auth/sso/device", a.ssoDevice)
	open("POST /api/v1/auth/sso/device/token", a.ssoDeviceToken)
	open("GET /auth/oidc/login", a.ssoLogin)
	open("GET /auth/oidc/callback", a.ssoCallback)
	auth("GET /api/v1/tokens", a.listTokens)
	auth("DELETE /api/v1/tokens/{id}", a.revokeToken)
	auth("GET /api/v1/targets", a.targets)
	auth("GET /api/v1/signatures/meanings", a.signatureMeanings)
	auth("GET /api/v1/users", a.listUsers)
	auth("POST /api/v1/stepup/begin", a.stepUpBegin)
	auth("GET /api/v1/passkeys", a.listPasskeys)
	auth("POST /api/v1/passkeys/begin", a.beginPasskey)
	auth("POST /api/v1/passkeys", a.finishPasskey)
	auth("DELETE /api/v1/passkeys/{id}", a.removePasskey)
	auth("POST /api/v1/totp/begin", a.totpBegin)
	auth("POST /api/v1/totp", a.totpConfirm)

	auth("POST /api/v1/requests", a.createRequest)
	auth("GET /api/v1/requests", a.listRequests)
	auth("GET /api/v1/requests/{id}", a.getRequest)
	auth("POST /api/v1/requests/{id}/approve", a.decide(true))
	auth("POST /api/v1/requests/{id}/deny", a.decide(false))
	auth("POST /api/v1/requests/{id}/cancel", a.cancel)
	auth("GET /api/v1/grants", a.listGrants)
	auth("GET /api/v1/grants/{id}", a.getGrant)
	auth("POST /api/v1/grants/{id}/revoke", a.revoke)
	auth("POST /api/v1/grants/{id}/extend", a.extend)
	auth("GET /api/v1/access", a.accessAt)

	auth("GET /api/v1/sessions", a.listSessions)
	auth("GET /api/v1/sessions/{id}", a.getSession)
	auth("GET /api/v1/sessions/{id}/verify", a.verifySession)
	auth("GET /api/v1/sessions/{id}/export", a.export)
	auth("GET /api/v1/sessions/{id}/evidence", a.evidence)
	auth("POST /api/v1/sessions/{id}/kill", a.kill)

	auth("GET /api/v1/audit", a.auditor(a.auditList))
	auth("GET /api/v1/audit/verify", a.auditor(a.auditVerify))
	auth("GET /api/v1/audit/views", a.auditor(a.auditViews))
	auth("GET /api/v1/audit/views/{view}", a.auditor(a.auditView))
	auth("GET /api/v1/unmasked", a.auditor(a.listUnmasked))

	auth("GET /api/v1/debug/pprof/", a.profiler(pprof.Index))
	auth("GET /api/v1/debug/pprof/{profile}", a.profiler(servePprof))

	bg := func(pattern string, h http.HandlerFunc) { auth(pattern, a.withBreakGlass(h)) }
	bg("GET /api/v1/breakglass", a.listBreakGlass)
	bg("GET /api/v1/breakglass/{account}", a.breakGlassStatus)
	bg("POST /api/v1/breakglass/{account}/unseal", a.unseal)
	bg("POST /api/v1/breakglass/unseals/{id}/confirm", a.confirm)
	bg("POST /api/v1/breakglass/{account}/close", a.closeBreakGlass)
	bg("POST /api/v1/breakglass/{account}/reveal", a.reveal)
	bg("POST /api/v1/breakglass/{account}/report", a.report)
	// Reading drills needs no break-glass account: restore drills are
	// filed with them.
	drills := func(pattern string, h http.HandlerFunc) { auth(pattern, a.withDrills(h)) }
	drills("GET /api/v1/drills", a.drillStatus)
	bg("POST /api/v1/drills", a.startDrill)
	drills("GET /api/v1/drills/report", a.drillReport)
	drills("GET /api/v1/drills/{id}", a.getDrill)

	ev := func(pattern string, action access.Action, h http.HandlerFunc) {
		auth(pattern, a.evidenceOnly(action, h))
	}
	ev("GET /api/v1/evidence", access.ExportEvidence, a.evidencePeriod)
	ev("POST /api/v1/shares", access.ShareEvidence, a.createShare)
	ev("GET /api/v1/shares", access.ShareEvidence, a.listShares)
	ev("DELETE /api/v1/shares/{id}", access.ShareEvidence, a.revokeShare)
	ev("POST /api/v1/drills/retrieval", access.ExportEvidence, a.recordRetrievalDrill)
	ev("GET /api/v1/drills/retrieval", access.ExportEvidence, a.retrievalDrills)
	// Share links are anonymous: the token in the path is the only
	// credential, and only this route reads it.
	open("GET "+SharePath("{token}"), a.serveShare)
	auth("GET /api/v1/holds", a.listHolds)
	auth("GET /api/v1/holds/{id}", a.getHold)
	auth("POST /api/v1/holds/{id}/approve", a.decideHold(true))
	auth("POST /api/v1/holds/{id}/deny", a.decideHold(false))
	a.registerReviews(auth)

	a.registerIndicators(auth)

	auth("POST /api/v1/db/token", a.dbToken)
	auth("POST /api/v1/ssh/certificate", a.sshCertificate)
}

// Fail answers an error from a broker service (see WriteFailure).
func (a *API) Fail(w http.ResponseWriter, err error) { WriteFailure(w, a.log, err) }

// unavailable answers 503 for a part this broker does not run.
func unavailable(w http.ResponseWriter, code, msg string) {
	WriteError(w, http.StatusServiceUnavailable, code, msg)
}

// principal is the caller; the gate set it.
func principal(r *http.Request) Principal {
	p, _ := PrincipalFrom(r.Context())
	return p
}

// record appends an audit entry; a failure is logged, never shown.
func (a *API) record(ctx context.Context, e audit.Entry) {
	if _, err := a.o.Audit.Append(ctx, e); err != nil {
		a.log.Error("api: audit append failed", "action", e.Action, "err", err)
	}
}

// csp forbids inline scripts and styles, plugins, framing and foreign
// connections.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"font-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// SecureHeaders sets the security headers every API and UI response
// carries; hsts adds Strict-Transport-Security.
func SecureHeaders(hsts bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", csp)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
		if hsts {
			hd.Set("Strict-Transport-Security", "max-age=31536000")
		}
		next.ServeHTTP(w, r)
	})
}

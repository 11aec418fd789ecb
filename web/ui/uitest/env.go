// Package uitest runs the broker's web UI in-process on loopback for the
// UI's Go tests and its browser suite: a SQLite state store, the real
// identity and access services, a recorder over a local directory, the
// live hub, the break-glass service with two sealed accounts, and seeded
// requests, grants and recordings (short SSH and PostgreSQL sessions
// recorded through the recorder, a generated two-hour terminal session,
// and live sessions fed from the test).
package uitest

import (
	"context"
	"encoding/base32"
	"fmt"
	"github.com/custos-pam/custos/broker/holds"
	"io"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/breakglass"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/dbtoken"
	"github.com/custos-pam/custos/broker/esign"
	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/broker/kri"
	"github.com/custos-pam/custos/broker/review"
	"github.com/custos-pam/custos/broker/sshca"
	"github.com/custos-pam/custos/broker/store/sqlite"
	"github.com/custos-pam/custos/recorder"
	"github.com/custos-pam/custos/recorder/keywrap"
	"github.com/custos-pam/custos/recorder/manifest"
	"github.com/custos-pam/custos/recorder/store/localdir"
	"github.com/custos-pam/custos/web"
	webui "github.com/custos-pam/custos/web/ui"
)

// Password is every seeded user's password.
const Password = "correct horse battery staple"

// TOTPKey is the second factor of user sam (security).
var TOTPKey = []byte("custos-uitest-totp-key!!")

// Users: alice and dave request (dbas), bob and carol approve, sam is
// security and signs in with a TOTP code, erin and frank are break-glass
// custodians (with TOTP codes). ssh-root's drill is hourly and, since the
// service first saw it two hours ago, overdue; pg-admin's is quarterly.
const configYAML = `
listen:
  http: 127.0.0.1:0
  data_dir: %[1]s/data
store:
  driver: sqlite
  path: %[1]s/state.db
recording:
  store: local
  dir: %[1]s/recordings
  encryption: local
  retention: 1d
auth:
  max_failures: 50
users:
  - {name: alice, password: %[2]q}
  - {name: dave, password: %[2]q}
  - {name: bob, password: %[2]q}
  - {name: carol, password: %[2]q}
  - {name: sam, password: %[2]q, totp_secret: %[3]q}
  - {name: erin, password: %[2]q, totp_secret: %[4]q}
  - {name: frank, password: %[2]q, totp_secret: %[5]q}
groups:
  - {name: dbas, members: [alice, dave]}
  - {name: approvers, members: [bob, carol]}
  - {name: security, members: [sam]}
  - {name: custodians, members: [erin, frank]}
security_admins: [security]
targets:
  - name: demo-ssh
    kind: ssh
    address: 127.0.0.1:22
    ssh:
      host_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"]
    roles:
      - name: ops
        policy: {requesters: [dbas], approvers: [approvers], approvals: 1, max_duration: 8h, require_reason: true}
      - {name: bg-root, policy: {approvers: [custodians]}}
  - name: demo-pg
    kind: postgres
    address: 127.0.0.1:5432
    postgres: {database: postgres}
    roles:
      - name: readonly
        policy: {requesters: [dbas], approvers: [approvers], approvals: 1, max_duration: 8h}
      - name: monitor
        masking: {subject_id: mask}
        policy: {requesters: [dbas], approvers: [approvers], approvals: 1, max_duration: 8h}
      - name: monitor-unmask
        unmask: {role: monitor, classifications: [subject_id]}
        policy: {requesters: [dbas], approvers: [approvers], approvals: 1, max_duration: 8h}
%[6]s      - {name: bg-admin, vault_role: breakglass, policy: {approvers: [custodians]}}
data_dictionary:
  classifications:
    - {name: subject_id, columns: ["*.*.subject_id"], keep_prefix: 2}
indicators:
  limits:
    - {indicator: users_without_mfa, op: ">", value: 0}
breakglass:
  - {name: ssh-root, target: demo-ssh, role: bg-root, custodians: [custodians], drill: {schedule: "0 * * * *"}}
  - {name: pg-admin, target: demo-pg, role: bg-admin, custodians: [custodians], max_open: 30m}
`

// Env is a running web UI with its services.
type Env struct {
	URL string
	// LocalURL is URL with host localhost, the passkeys' relying party.
	LocalURL string
	// StepUp verifies step-ups and holds the passkeys.
	StepUp   *identity.StepUp
	Server   *httptest.Server
	Config   *config.Config
	State    *sqlite.Store
	Audit    *audit.Log
	Identity *identity.Service
	Access   *access.Service
	Recorder *recorder.Recorder
	Hub      *webui.Hub
	UI       *webui.UI
	// API is the JSON API the UI calls, served by Web.
	API   *web.API
	Web   *web.Server
	Synth *Synth
	Term  *Terminator
	// BreakGlass runs the break-glass accounts; its notices land in
	// Notices.
	BreakGlass *breakglass.Service
	Notices    *Notices
	// Holds are held statements (HoldStatement opens one).
	Holds *holds.Store
	// Reviews runs access reviews (reviewers: the security admins).
	Reviews *review.Service
	// Indicators computes the risk dashboard; call Evaluate to check
	// its limits.
	Indicators *kri.Evaluator
	dir        string
}

// Options configure StartWith. The zero value is Start's broker.
type Options struct {
	// SSO turns on single sign-on with this provider; the broker's
	// callback is its URL + /auth/oidc/callback.
	SSO *config.OIDC
	// StepUp adds role demo-pg/admin (dbas request, approvers approve)
	// whose approvals need this step-up (passkey, totp or any).
	StepUp string
	// TerminateStepUp sets identity.step_up.terminate_session.
	TerminateStepUp string
	// EvidenceStepUp sets identity.step_up.export_evidence.
	EvidenceStepUp string
}

// Start starts the UI on a loopback TLS listener; everything stops at the
// end of the test.
func Start(tb testing.TB) *Env { return StartWith(tb, Options{}) }

// StartWith is Start with options.
func StartWith(tb testing.TB, o Options) *Env {
	tb.Helper()
	// The listener comes first: single sign-on needs the URL.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("uitest: listen: %v", err)
	}
	var sso *identity.OIDC
	if o.SSO != nil {
		if sso, err = identity.NewOIDC(*o.SSO, "https://"+ln.Addr().String()+"/auth/oidc/callback", nil); err != nil {
			tb.Fatalf("uitest: sso: %v", err)
		}
	}
	ctx := context.Background()
	dir := tb.TempDir()
	b32 := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString
	stepUpRole := ""
	if o.StepUp != "" {
		stepUpRole = "      - name: admin\n        policy: {requesters: [dbas], approvers: [approvers], approvals: 1, max_duration: 8h, step_up: " +
			o.StepUp + "}\n"
	}
	cfg, err := config.Parse(fmt.Appendf(nil, configYAML, dir, Password, b32(TOTPKey), b32(totpKeys["erin"]), b32(totpKeys["frank"]), stepUpRole))
	if err != nil {
		tb.Fatalf("uitest: config: %v", err)
	}
	cfg.Identity.StepUp.TerminateSession = o.TerminateStepUp
	cfg.Identity.StepUp.ExportEvidence = o.EvidenceStepUp
	st, err := sqlite.Open(ctx, filepath.Join(dir, "state.db"))
	if err != nil {
		tb.Fatalf("uitest: store: %v", err)
	}
	tb.Cleanup(func() { st.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	auditLog := audit.NewLog(st)
	dirx, err := identity.NewDirectory(cfg)
	if err != nil {
		tb.Fatalf("uitest: directory: %v", err)
	}
	ids, err := identity.NewService(identity.Options{Auth: cfg.Auth, Directory: dirx, Store: st, Audit: auditLog, SSO: sso, Log: log})
	if err != nil {
		tb.Fatalf("uitest: identity: %v", err)
	}
	acc := access.New(access.Options{Config: cfg, Directory: dirx, Store: st, Audit: auditLog, Log: log})

	objects, err := localdir.New(filepath.Join(dir, "recordings"))
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := manifest.LoadSigner(filepath.Join(dir, "keys", "signing.key"))
	if err != nil {
		tb.Fatal(err)
	}
	keys, err := keywrap.LoadLocal(filepath.Join(dir, "keys", "wrap.key"))
	if err != nil {
		tb.Fatal(err)
	}
	rec, err := recorder.New(ctx, recorder.Config{SpoolDir: filepath.Join(dir, "spool"), Store: objects, Signer: signer,
		Keys: keys, Audit: auditLog, Index: broker.SessionIndex{Store: st}, Logger: log, IndexInterval: 200 * time.Millisecond})
	if err != nil {
		tb.Fatalf("uitest: recorder: %v", err)
	}
	tb.Cleanup(func() { rec.Close() })

	hub := webui.NewHub(rec)
	term := &Terminator{live: map[string]*recorder.Writer{}}
	e := &Env{Config: cfg, State: st, Audit: auditLog, Identity: ids, Access: acc, Recorder: rec, Hub: hub, Term: term, dir: dir,
		Synth: &Synth{Store: objects, Signer: signer, Keys: keys, State: st, Audit: auditLog}}

	srv := web.New(log, nil)
	e.Server = httptest.NewUnstartedServer(srv.Handler())
	e.Server.Listener.Close()
	e.Server.Listener = ln
	// Browsers reject the test certificate once before accepting it.
	e.Server.Config.ErrorLog = stdlog.New(io.Discard, "", 0)
	e.Server.StartTLS()
	tb.Cleanup(e.Server.Close)
	e.URL = e.Server.URL
	e.startBreakGlass(tb, dirx, log)
	// Review attestations are signed by the broker's ceremony, passkeys
	// included once the step-up verifier exists (below).
	reviewSigner := esign.New(esign.Options{Config: config.NewLive(cfg), Reauth: ids, Names: dirx})
	if e.Reviews, err = review.New(review.Options{Config: config.NewLive(cfg), Directory: dirx, Store: st, Audit: auditLog,
		Signer: reviewSigner, Log: log}); err != nil {
		tb.Fatalf("uitest: reviews: %v", err)
	}
	e.startIndicators(tb, srv, dirx, log)
	userCA, err := sshca.LoadOrCreate(filepath.Join(dir, "keys", "ssh_user_ca"))
	if err != nil {
		tb.Fatalf("uitest: ssh ca: %v", err)
	}
	e.Holds = holds.New(0)
	// Browsers refuse an IP address as relying party: passkeys are
	// registered for localhost, so a browser test opens LocalURL.
	e.LocalURL = strings.Replace(e.URL, "127.0.0.1", "localhost", 1)
	passkeys, err := identity.NewPasskeys(config.WebAuthn{RPID: "localhost", Origins: []string{e.LocalURL}}, e.URL, st, auditLog, nil)
	if err != nil {
		tb.Fatalf("uitest: passkeys: %v", err)
	}
	e.StepUp = identity.NewStepUp(passkeys, dirx, st, auditLog, nil, nil)
	reviewSigner.SetPasskeys(e.StepUp)
	api, err := web.NewAPI(web.Options{Auth: ids, Tokens: ids.Tokens(), Access: acc, Store: st, Audit: auditLog,
		StepUp: e.StepUp, Passkeys: passkeys, TOTP: identity.StoreTOTP{Store: st, Audit: auditLog, Dir: dirx},
		Config: cfg, Recordings: rec, Terminator: term, Live: hub, BreakGlass: e.BreakGlass, SSO: ids, Users: ids, Holds: e.Holds, Reviews: e.Reviews, Indicators: e.Indicators,
		DBTokens: dbtoken.New(ids.Tokens(), acc, 10*time.Minute), DBHost: "127.0.0.1", DBPort: "6432",
		SSHCA: userCA, SSHCertTTL: 5 * time.Minute, PublicURL: e.URL, Log: log})
	if err != nil {
		tb.Fatalf("uitest: api: %v", err)
	}
	api.Register(srv)
	ui, err := webui.New(webui.Options{API: api, Audit: auditLog, Recordings: rec, Live: hub, Log: log})
	if err != nil {
		tb.Fatalf("uitest: ui: %v", err)
	}
	ui.Register(srv)
	e.API, e.Web = api, srv
	e.UI = ui
	return e
}

// Terminator ends live sessions started with StartLive, as the proxies
// would.
type Terminator struct {
	mu   sync.Mutex
	live map[string]*recorder.Writer
}

// Terminate implements the UI's terminator.
func (t *Terminator) Terminate(sessionID, reason string) bool {
	t.mu.Lock()
	w := t.live[sessionID]
	delete(t.live, sessionID)
	t.mu.Unlock()
	if w == nil {
		return false
	}
	_ = w.Output(1, []byte("\r\ncustos: access revoked: "+reason+"\r\n"))
	return w.Terminate("security", reason) == nil
}

func (t *Terminator) add(id string, w *recorder.Writer) {
	t.mu.Lock()
	t.live[id] = w
	t.mu.Unlock()
}

// Client is an HTTP client for the env with its own cookie jar.
func (e *Env) Client() *http.Client {
	jar, _ := cookiejar.New(nil)
	c := e.Server.Client()
	cc := *c
	cc.Jar = jar
	cc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cc
}

// TOTP returns sam's current code.
func TOTP() string { return identity.TOTP(TOTPKey, time.Now()) }

// Grant makes user's request on target/role and has approver approve it.
func (e *Env) Grant(tb testing.TB, user, target, role, approver string) broker.Grant {
	tb.Helper()
	ctx := context.Background()
	req, err := e.Access.Create(ctx, user, access.NewRequest{Target: target, Role: role, Duration: 4 * time.Hour,
		Reason: "INC-" + strings.ToUpper(user[:1]) + " maintenance", Ticket: "INC-1234"})
	if err != nil {
		tb.Fatalf("uitest: request: %v", err)
	}
	_, g, err := e.Access.Decide(ctx, approver, req.ID, access.Decision{Approve: true, Comment: "ok", Via: "cli"})
	if err != nil || g == nil {
		tb.Fatalf("uitest: approve: %v", err)
	}
	return *g
}

// Drain waits until every closed recording is stored and indexed.
func (e *Env) Drain(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.Recorder.Drain(ctx); err != nil {
		tb.Fatal(err)
	}
}

// AuditRecords returns the audit records with an action prefix.
func (e *Env) AuditRecords(tb testing.TB, prefix string) []broker.AuditRecord {
	tb.Helper()
	var out []broker.AuditRecord
	err := e.State.View(context.Background(), func(tx broker.Tx) error {
		var err error
		out, err = tx.ListAudit(broker.AuditFilter{ActionPrefix: prefix, Limit: 10000})
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

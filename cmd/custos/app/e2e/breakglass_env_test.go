package e2e_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/custos-pam/custos/approvals/slack"
	"github.com/custos-pam/custos/approvals/slack/slacktest"
	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/breakglass"
	"github.com/custos-pam/custos/broker/config"
	vaultcreds "github.com/custos-pam/custos/broker/creds/vault"
	"github.com/custos-pam/custos/broker/dbtoken"
	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/broker/store/sqlite"
	"github.com/custos-pam/custos/cmd/custos/app"
	"github.com/custos-pam/custos/deploy/devstack"
	"github.com/custos-pam/custos/protocols/lifecycle"
	pgproxy "github.com/custos-pam/custos/protocols/postgres"
	"github.com/custos-pam/custos/recorder"
	"github.com/custos-pam/custos/recorder/event"
	"github.com/custos-pam/custos/web"
)

func TestMain(m *testing.M) { os.Exit(devstack.Main(m)) }

const (
	password     = "correct horse battery staple"
	botToken     = "xoxb-1-custos-breakglass-test"
	signing      = "breakglass-signing-secret-0123456789"
	securityChan = "C0SECURITY"
	approvalChan = "C0APPROVALS"
)

// custodians are sam, carol and erin; dave is a security admin but no
// custodian; alice is a DBA.
var people = []string{"sam", "carol", "erin", "dave", "alice"}

// testConfig is a broker config against the harness's PostgreSQL and
// Vault; %[5]s is the breakglass section.
const testConfig = `
listen: {data_dir: "%[1]s"}
recording: {encryption: local}
vault: {address: "%[2]s", token: env:CUSTOS_BG_VAULT_TOKEN, timeout: 3s}
users:
  - {name: sam, password: env:CUSTOS_BG_PASSWORD, totp_secret: env:CUSTOS_BG_TOTP_SAM}
  - {name: carol, password: env:CUSTOS_BG_PASSWORD, totp_secret: env:CUSTOS_BG_TOTP_CAROL}
  - {name: erin, password: env:CUSTOS_BG_PASSWORD, totp_secret: env:CUSTOS_BG_TOTP_ERIN}
  - {name: dave, password: env:CUSTOS_BG_PASSWORD, totp_secret: env:CUSTOS_BG_TOTP_DAVE}
  - {name: alice, password: env:CUSTOS_BG_PASSWORD, totp_secret: env:CUSTOS_BG_TOTP_ALICE}
groups:
  - {name: custodians, members: [sam, carol, erin]}
  - {name: security, members: [dave]}
  - {name: dbas, members: [alice]}
security_admins: [security]
targets:
  - name: demo-pg
    kind: postgres
    address: "%[3]s"
    roles:
      - {name: readonly, policy: {requesters: [dbas], approvers: [custodians]}}
      - {name: bg, vault_role: breakglass, policy: {approvers: [custodians]}}
%[4]s
breakglass:
%[5]s
`

// pgAccount is the default break-glass account; tests add fields.
func pgAccount(extra string) string {
	return "  - {name: pg-admin, target: demo-pg, role: bg, custodians: [custodians]" + extra + "}\n"
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// clock is a time source a test can move forward.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) Set(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset = d
}

// env is a broker's break-glass machinery against the real PostgreSQL and
// Vault: the SQLite store, identities with TOTP, the access service and its
// scheduler, the Vault issuer (broker policy), the recorder, the real
// PostgreSQL proxy, Slack against the emulator, and the service itself.
type env struct {
	t      *testing.T
	ctx    context.Context
	cfg    *config.Config
	pg     *devstack.Postgres
	vault  *devstack.Vault
	root   *vaultapi.Client
	st     broker.Store
	audit  *audit.Log
	dir    *identity.Directory
	ids    *identity.Service
	acc    *access.Service
	dbt    *dbtoken.Service
	issuer *vaultcreds.Issuer
	rec    *recorder.Recorder
	emu    *slacktest.Server
	sl     *slack.Slack
	proxy  *pgproxy.Proxy
	pgAddr string
	logs   *syncBuffer
	log    *slog.Logger
	clock  *clock
	keys   map[string][]byte

	authMu sync.Mutex
	authAt time.Time
	auth   *identity.PasswordAuthenticator

	svc     *breakglass.Service
	reg     *prometheus.Registry
	metrics string // URL of /metrics
	stopSvc func()
}

type envOptions struct {
	accounts string
	targets  string
	// vaultAddr overrides the Vault address the issuer uses.
	vaultAddr string
	// before runs after the store opens and before the service starts.
	before  func(e *env)
	noStart bool
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	pg := devstack.StartPostgres(t)
	v := devstack.StartVault(t)
	v.Bootstrap(t, pg)
	e := &env{t: t, ctx: context.Background(), pg: pg, vault: v, logs: &syncBuffer{}, clock: &clock{},
		keys: map[string][]byte{}, authAt: time.Now()}
	e.log = slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", e.logs.String())
		}
	})
	e.root = rootClient(t, v.Addr, v.Token)

	t.Setenv("CUSTOS_BG_VAULT_TOKEN", v.BrokerToken)
	t.Setenv("CUSTOS_BG_PASSWORD", password)
	for _, p := range people {
		var b [20]byte
		_, _ = rand.Read(b[:])
		secret := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])
		t.Setenv("CUSTOS_BG_TOTP_"+strings.ToUpper(p), secret)
		key, err := identity.ParseTOTPSecret(secret)
		if err != nil {
			t.Fatal(err)
		}
		e.keys[p] = key
	}
	if o.accounts == "" {
		o.accounts = pgAccount("")
	}
	vaultAddr := v.Addr
	if o.vaultAddr != "" {
		vaultAddr = o.vaultAddr
	}
	data := t.TempDir()
	cfg, err := config.Parse(fmt.Appendf(nil, testConfig, data, vaultAddr, pg.Addr(), o.targets, o.accounts))
	if err != nil {
		t.Fatal(err)
	}
	e.cfg = cfg

	st, err := sqlite.Open(e.ctx, filepath.Join(data, "custos.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.st, e.audit = st, audit.NewLog(st)
	if e.dir, err = identity.NewDirectory(cfg); err != nil {
		t.Fatal(err)
	}
	if e.ids, err = identity.NewService(identity.Options{Auth: cfg.Auth, Directory: e.dir, Store: st, Audit: e.audit, Log: e.log}); err != nil {
		t.Fatal(err)
	}
	e.auth = identity.NewPasswordAuthenticator(e.dir, identity.StoreStepGuard{Store: st}, e.authNow)
	e.acc = access.New(access.Options{Config: cfg, Directory: e.dir, Store: st, Audit: e.audit, Log: e.log})
	e.dbt = dbtoken.New(e.ids.Tokens(), e.acc, 15*time.Minute)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	vc, err := vaultcreds.New(cfg.Vault, e.log)
	if err != nil {
		t.Fatal(err)
	}
	if e.issuer, err = vaultcreds.NewIssuer(vaultcreds.Options{Client: vc, Config: cfg, Store: st, Audit: e.audit, Log: e.log}); err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { vc.Run(ctx) })
	wg.Go(func() { _ = e.issuer.Run(ctx) })
	wg.Go(func() { e.acc.RunScheduler(ctx) })

	if e.rec, err = app.NewRecorder(e.ctx, cfg, nil, app.RecorderDeps{Audit: e.audit, Index: broker.SessionIndex{Store: st}, Logger: e.log}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.rec.Close() })

	e.emu = slacktest.New(t, slacktest.Options{BotToken: botToken, SigningSecret: signing,
		Channels: []slacktest.Channel{{ID: approvalChan, Name: "approvals"}, {ID: securityChan, Name: "security"}}})
	t.Setenv("CUSTOS_BG_SLACK_BOT", botToken)
	if e.sl, err = slack.New(slack.Options{Config: config.Slack{Enabled: true, BotToken: "env:CUSTOS_BG_SLACK_BOT",
		SigningSecret: signing, Channel: approvalChan, SecurityChannel: securityChan, APIURL: e.emu.APIURL()},
		Targets: cfg.Targets, Access: e.acc, Directory: e.dir, Store: st, Audit: e.audit, Log: e.log}); err != nil {
		t.Fatal(err)
	}
	e.acc.AddNotifier(e.sl)
	wg.Go(func() { _ = e.sl.Run(ctx) })

	e.proxy, err = pgproxy.New(pgproxy.Options{Targets: cfg, Auth: e.dbt, Grants: e.acc, Credentials: issuerLogins{e.issuer},
		Options:        lifecycle.Options{Recorder: recorderStart{e.rec}, Audit: e.audit, Logger: e.log},
		AllowPlaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.pgAddr = ln.Addr().String()
	wg.Go(func() { _ = e.proxy.Serve(ctx, ln) })
	t.Cleanup(func() { e.proxy.Close() })
	events := st.GrantEvents(ctx)
	wg.Go(func() {
		for ev := range events {
			if ev.State != broker.GrantActive {
				e.proxy.TerminateGrant(ev.GrantID, "grant "+string(ev.State))
			}
		}
	})
	if o.before != nil {
		o.before(e)
	}
	if !o.noStart {
		e.start()
	}
	return e
}

// start starts a break-glass service, as a broker start does.
func (e *env) start() {
	e.t.Helper()
	e.reg = prometheus.NewRegistry()
	svc, err := breakglass.New(breakglass.Options{Config: e.cfg, Store: e.st, Audit: e.audit, Directory: e.dir,
		Authenticator: e.auth, Access: e.acc, Vault: e.issuer, Notifier: e.sl, Registry: e.reg,
		Record: app.DrillRecording(e.rec), Log: e.log, Now: e.clock.Now, Tick: 100 * time.Millisecond})
	if err != nil {
		e.t.Fatal(err)
	}
	srv := web.New(e.log, e.reg)
	hs := httptest.NewServer(srv.Handler())
	e.metrics = hs.URL + "/metrics"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = svc.Run(ctx) }()
	var once sync.Once
	e.stopSvc = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				buf := make([]byte, 1<<20)
				e.t.Errorf("service did not stop within 30s:\n%s", buf[:runtime.Stack(buf, true)])
			}
			hs.Close()
		})
	}
	e.t.Cleanup(e.stopSvc)
	e.svc = svc
	select {
	case <-svc.Started():
	case <-time.After(15 * time.Second):
		e.t.Fatal("service did not start")
	}
}

// restart stops the service and starts a new one on the same store.
func (e *env) restart() {
	e.t.Helper()
	e.stopSvc()
	e.start()
}

// authNow is the authenticator's clock: each factor is generated one TOTP
// step later, so a custodian may authenticate several times in a test
// without reusing a code.
func (e *env) authNow() time.Time {
	e.authMu.Lock()
	defer e.authMu.Unlock()
	return e.authAt
}

// factor returns user's password and a fresh TOTP code.
func (e *env) factor(user string) breakglass.Factor {
	e.authMu.Lock()
	defer e.authMu.Unlock()
	e.authAt = e.authAt.Add(30 * time.Second)
	return breakglass.Factor{Password: password, TOTP: identity.TOTP(e.keys[user], e.authAt), Via: "cli"}
}

// open unseals pg-admin with sam and carol.
func (e *env) open(name string) breakglass.Unseal {
	e.t.Helper()
	u, err := e.svc.Unseal(e.ctx, "sam", breakglass.UnsealRequest{Account: name, Reason: "primary down", Incident: "INC-1", Factor: e.factor("sam")})
	if err != nil {
		e.t.Fatal(err)
	}
	u, err = e.svc.Confirm(e.ctx, "carol", u.ID, e.factor("carol"))
	if err != nil {
		e.t.Fatal(err)
	}
	if u.Outcome != breakglass.UnsealOpened {
		e.t.Fatalf("unseal %s after two confirmations: %+v", u.ID, u)
	}
	return u
}

func (e *env) status(name string) breakglass.AccountView {
	e.t.Helper()
	v, err := e.svc.Status(e.ctx, "dave", name)
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

// waitState waits up to limit for the account to reach state.
func (e *env) waitState(name string, want breakglass.State, limit time.Duration) breakglass.AccountView {
	e.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		v := e.status(name)
		if v.State == want {
			return v
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s is %s after %s, want %s (last error %q)", name, v.State, limit, want, v.LastRotationError)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// staticCreds reads the static role's current login straight from Vault.
func (e *env) staticCreds(role string) (string, string) {
	e.t.Helper()
	s, err := e.root.Logical().Read("database/static-creds/" + role)
	if err != nil || s == nil {
		e.t.Fatalf("read static creds: %v", err)
	}
	return s.Data["username"].(string), s.Data["password"].(string)
}

// login tries user/pass directly against the target database.
func (e *env) login(user, pass string) error {
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d dbname=postgres user=%s password='%s' sslmode=prefer",
		e.pg.Host, e.pg.Port, user, strings.ReplaceAll(pass, "'", `\'`)))
	if err != nil {
		return err
	}
	return c.Close(ctx)
}

// viaProxy connects through the PostgreSQL proxy as user with a
// connection token.
func (e *env) viaProxy(user, target string) (*pgx.Conn, error) {
	tok, _, _, err := e.dbt.Issue(e.ctx, user, target, "", "127.0.0.1")
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(e.pgAddr)
	ctx, cancel := context.WithTimeout(e.ctx, 15*time.Second)
	defer cancel()
	return pgx.Connect(ctx, fmt.Sprintf("host=%s port=%s dbname=%s user=%s password=%s sslmode=disable", host, port, target, user, tok))
}

// auditActions returns the audit records whose action starts with prefix.
func (e *env) auditActions(prefix string) []broker.AuditRecord {
	e.t.Helper()
	var out []broker.AuditRecord
	err := e.st.View(e.ctx, func(tx broker.Tx) error {
		var err error
		out, err = tx.ListAudit(broker.AuditFilter{ActionPrefix: prefix})
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// notices returns the texts posted to the security channel.
func (e *env) notices() []string {
	var out []string
	for _, m := range e.emu.Messages(securityChan) {
		out = append(out, m.Text)
	}
	return out
}

// waitNotice waits for a security-channel message containing all parts.
func (e *env) waitNotice(parts ...string) string {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		for _, n := range e.notices() {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(n, p)
			}
			if all {
				return n
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no security notice with %q; have:\n%s", parts, strings.Join(e.notices(), "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scrape returns the /metrics text.
func (e *env) scrape() string {
	e.t.Helper()
	resp, err := http.Get(e.metrics)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// assertNoSecret fails when a secret appears in the logs or the audit log.
func (e *env) assertNoSecret(secret string) {
	e.t.Helper()
	if strings.Contains(e.logs.String(), secret) {
		e.t.Error("a secret appears in the logs")
	}
	for _, r := range e.auditActions("") {
		if strings.Contains(string(r.Details), secret) || strings.Contains(r.Reason, secret) {
			e.t.Errorf("a secret appears in audit record %s", r.Action)
		}
	}
}

func rootClient(t *testing.T, addr, token string) *vaultapi.Client {
	t.Helper()
	cfg := vaultapi.DefaultConfig()
	cfg.Address = addr
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(token)
	return c
}

// issuerLogins and recorderStart are the adapters the broker wires the
// proxy with.
type issuerLogins struct{ i *vaultcreds.Issuer }

func (c issuerLogins) PostgresLogin(ctx context.Context, g broker.Grant, sessionID string) (string, string, error) {
	l, err := c.i.ForSession(ctx, g, sessionID)
	return l.Username, l.Password, err
}

func (c issuerLogins) EndLogin(ctx context.Context, g broker.Grant, sessionID string) error {
	return c.i.EndSession(ctx, g.ID, sessionID)
}

type recorderStart struct{ r *recorder.Recorder }

func (r recorderStart) Start(ctx context.Context, h event.Header) (lifecycle.Recording, error) {
	w, err := r.r.Start(ctx, h)
	if err != nil {
		return nil, err
	}
	return w, nil
}

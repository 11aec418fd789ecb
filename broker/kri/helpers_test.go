package kri_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/breakglass"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/creds"
	vaultcreds "github.com/custos-pam/custos/broker/creds/vault"
	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/broker/kri"
	"github.com/custos-pam/custos/broker/store/sqlite"
	"github.com/custos-pam/custos/deploy/devstack"
)

// env is a real SQLite store with a config of a few users and targets,
// the break-glass service (for drills) and a Computer at a fixed clock
// near the wall clock (audit records the evaluator appends carry the
// wall clock).
type env struct {
	t   *testing.T
	st  broker.Store
	cfg *config.Config
	now time.Time
	bg  *breakglass.Service
	c   *kri.Computer
	log *audit.Log
}

func testConfig() *config.Config {
	rw := config.Role{Name: "rw", Policy: config.Policy{Approvers: []string{"approvers"}, Approvals: 1, RequireTicket: true}}
	ro := config.Role{Name: "ro", Policy: config.Policy{Approvers: []string{"approvers"}, Approvals: 1}}
	return &config.Config{
		Users: []config.User{
			{Name: "alice", TOTPSecret: totp}, {Name: "bob", TOTPSecret: totp}, {Name: "sam", TOTPSecret: totp},
			{Name: "dave", Disabled: true},
		},
		Groups:         []config.Group{{Name: "approvers", Members: []string{"alice", "bob"}}, {Name: "security", Members: []string{"sam"}}},
		SecurityAdmins: []string{"security"},
		Targets:        []config.Target{{Name: "db", Kind: "postgres", Roles: []config.Role{rw, ro}}},
	}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "custos.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, st: st, cfg: testConfig(), now: time.Now().UTC().Truncate(time.Second)}
	// Each user acted just now, so no one is dormant but whom a test adds.
	for _, u := range e.cfg.Users {
		e.audit(broker.AuditRecord{Time: e.now.Add(-time.Hour), Actor: u.Name, Action: "auth.login", Outcome: broker.OutcomeSuccess})
	}
	e.log = audit.NewLog(st)
	dir, err := identity.NewDirectory(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	acc := access.New(access.Options{Config: e.cfg, Directory: dir, Store: st, Audit: e.log})
	e.bg, err = breakglass.New(breakglass.Options{Config: e.cfg, Store: st, Audit: e.log, Directory: dir,
		Authenticator: identity.NewPasswordAuthenticator(dir, identity.StoreStepGuard{Store: st}, nil), Access: acc,
		Vault: noVault{}, Now: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	e.c, err = kri.New(kri.Options{Config: e.cfg, Store: st, Drills: e.bg, Now: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) clock() time.Time { return e.now }

func (e *env) update(fn func(tx broker.Tx) error) {
	e.t.Helper()
	if err := e.st.Update(e.t.Context(), fn); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) audit(r broker.AuditRecord) broker.AuditRecord {
	e.t.Helper()
	var out broker.AuditRecord
	e.update(func(tx broker.Tx) error {
		var err error
		out, err = tx.AppendAudit(r)
		return err
	})
	return out
}

func (e *env) grant(g broker.Grant) broker.Grant {
	if g.ID == "" {
		g.ID = broker.NewID("grt")
	}
	if g.RequestID == "" {
		g.RequestID = broker.NewID("req")
	}
	if g.State == "" {
		g.State = broker.GrantActive
	}
	e.update(func(tx broker.Tx) error { return tx.PutGrant(g) })
	return g
}

func (e *env) request(r broker.Request) broker.Request {
	if r.ID == "" {
		r.ID = broker.NewID("req")
	}
	if r.Target == "" {
		r.Target, r.Role = "db", "ro"
	}
	if r.State == "" {
		r.State = broker.RequestApproved
	}
	r.ExpiresAt = r.CreatedAt.Add(30 * time.Minute)
	e.update(func(tx broker.Tx) error { return tx.PutRequest(r) })
	return r
}

func (e *env) session(s broker.Session) broker.Session {
	if s.ID == "" {
		s.ID = broker.NewID("ses")
	}
	if s.Target == "" {
		s.Target, s.Role, s.Protocol = "db", "ro", "postgres"
	}
	if s.GrantID == "" {
		s.GrantID = "grt_x"
	}
	e.update(func(tx broker.Tx) error { return tx.PutSession(s) })
	return s
}

// get computes one indicator.
func (e *env) get(name string) kri.Indicator {
	e.t.Helper()
	ind, err := e.c.One(e.t.Context(), name)
	if err != nil {
		e.t.Fatal(err)
	}
	return ind
}

func value(ind kri.Indicator) float64 {
	if ind.Value == nil {
		return -1 // "no data" in the tables
	}
	return *ind.Value
}

func hasRecord(ind kri.Indicator, id string) bool {
	return slices.ContainsFunc(ind.Records, func(r kri.Record) bool { return r.ID == id })
}

type noVault struct{}

var errNoVault = errors.New("kri test: no vault")

func (noVault) StaticCreds(context.Context, string, string) (vaultcreds.StaticCreds, error) {
	return vaultcreds.StaticCreds{}, errNoVault
}
func (noVault) RotateStatic(context.Context, string, string) error { return errNoVault }
func (noVault) SSHForSession(context.Context, broker.Grant, string) (creds.SSHCert, error) {
	return creds.SSHCert{}, errNoVault
}

// notices records security notices as the Slack integration gets them.
type notices struct {
	mu    sync.Mutex
	texts []string
}

func (n *notices) SecurityNotice(_ context.Context, text string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.texts = append(n.texts, text)
	return nil
}

func (n *notices) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.texts)
}

// totp is a TOTP secret reference every test user with a second factor
// shares.
const totp config.Secret = "env:CUSTOS_KRI_TEST_TOTP"

func TestMain(m *testing.M) {
	os.Setenv("CUSTOS_KRI_TEST_TOTP", "JBSWY3DPEHPK3PXPJBSWY3DP")
	os.Exit(devstack.Main(m))
}

package sshproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/protocols/lifecycle"
)

// userExtension carries the identified Custos user from PublicKeyCallback
// to VerifiedPublicKeyCallback.
const userExtension = "custos-user"

// holdPoll is how often a held connection looks for its grant again.
const holdPoll = time.Second

// parseLogin splits the SSH user field at its last '@': "web-1" names the
// target, "deploy@web-1" also a login.
func parseLogin(field string) (login, target string, err error) {
	i := strings.LastIndexByte(field, '@')
	login, target = "", field
	if i >= 0 {
		login, target = field[:i], field[i+1:]
		if login == "" {
			return "", "", errors.New("empty login before '@'")
		}
	}
	if target == "" {
		return "", "", errors.New("no target named")
	}
	return login, target, nil
}

// refusal is why a connection was not admitted: err for logs and audit,
// banner for the user.
type refusal struct {
	err    error
	banner string
}

func refuse(banner string, args ...any) *refusal {
	msg := fmt.Sprintf(banner, args...)
	return &refusal{err: errors.New(msg), banner: msg + "\n"}
}

// admission is what an authorized connection brings to its session: the
// tracked session and its upstream connection.
type admission struct {
	core     *lifecycle.Session
	upstream *ssh.Client
}

// release ends an admitted connection whose handshake then failed.
func (a *admission) release(reason string) {
	a.upstream.Close()
	a.core.Finish(lifecycle.End{State: "interrupted", By: "system", Reason: reason})
}

// authState is one connection's authentication progress.
type authState struct {
	p   *Proxy
	raw net.Conn

	mu      sync.Mutex
	preauth ssh.ServerPreAuthConn
	refused bool
	adm     *admission
}

var errRefused = errors.New("connection refused earlier")

func (p *Proxy) serverConfig(st *authState) *ssh.ServerConfig {
	cfg := &ssh.ServerConfig{
		ServerVersion: serverVersion,
		MaxAuthTries:  6,
		Config:        clientCrypto(),
		PreAuthConnCallback: func(c ssh.ServerPreAuthConn) {
			st.mu.Lock()
			st.preauth = c
			st.mu.Unlock()
		},
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if st.isRefused() {
				return nil, errRefused
			}
			user, crit, err := p.identify(key)
			if err != nil {
				return nil, err
			}
			return &ssh.Permissions{CriticalOptions: crit, Extensions: map[string]string{userExtension: user}}, nil
		},
		VerifiedPublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey, perms *ssh.Permissions, _ string) (*ssh.Permissions, error) {
			if st.isRefused() {
				return nil, errRefused
			}
			user := perms.Extensions[userExtension]
			adm, r := p.admit(st, meta, user)
			if r != nil {
				st.refuse()
				return nil, &ssh.BannerError{Err: r.err, Message: r.banner}
			}
			st.mu.Lock()
			st.adm = adm
			st.mu.Unlock()
			p.logTransport(meta, adm.core.ID)
			return perms, nil
		},
	}
	cfg.AddHostKey(hostKeySigner(p.hostKey))
	return cfg
}

func (st *authState) isRefused() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.refused
}

// refuse marks the connection refused: later attempts fail without another
// banner, and the connection is cut shortly after the banner went out.
func (st *authState) refuse() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.refused {
		st.refused = true
		time.AfterFunc(time.Second, func() { st.raw.Close() })
	}
}

func (st *authState) banner(msg string) {
	st.mu.Lock()
	c := st.preauth
	st.mu.Unlock()
	if c != nil {
		_ = c.SendAuthBanner(msg)
	}
}

// identify maps a key to a user: a certificate from the broker's user CA
// names the user in its first principal; a plain key must be registered.
func (p *Proxy) identify(key ssh.PublicKey) (user string, critical map[string]string, err error) {
	cert, ok := key.(*ssh.Certificate)
	if !ok {
		user, ok := p.opts.Identities.UserForKey(key)
		if !ok {
			return "", nil, errors.New("public key is not registered")
		}
		return user, nil, nil
	}
	if cert.CertType != ssh.UserCert || len(cert.ValidPrincipals) == 0 {
		return "", nil, errors.New("not a user certificate")
	}
	if !p.isUserCA(cert.SignatureKey) {
		return "", nil, errors.New("certificate signed by an unknown authority")
	}
	user = cert.ValidPrincipals[0]
	// CheckCert verifies the signature, validity and critical options; the
	// authority is checked above (CheckCert does not).
	checker := ssh.CertChecker{Clock: p.opts.Now}
	if err := checker.CheckCert(user, cert); err != nil {
		return "", nil, err
	}
	if !p.opts.Identities.UserEnabled(user) {
		return "", nil, errors.New("certificate user is unknown or disabled")
	}
	return user, cert.CriticalOptions, nil
}

func (p *Proxy) isUserCA(auth ssh.PublicKey) bool {
	b := auth.Marshal()
	for _, k := range p.opts.UserCAKeys {
		if bytes.Equal(k.Marshal(), b) {
			return true
		}
	}
	return false
}

// admit authorizes an identified user, dials the target, starts the
// recording and admits the session, all before the client's
// authentication completes, so that every refusal reaches the user as a
// banner.
func (p *Proxy) admit(st *authState, meta ssh.ConnMetadata, user string) (*admission, *refusal) {
	ctx, cancel := context.WithTimeout(p.Context(), p.LoginTimeout())
	defer cancel()
	client := meta.RemoteAddr().String()
	login, name, err := parseLogin(meta.User())
	if err != nil {
		return nil, refuse("custos: %v; connect as TARGET@broker or LOGIN@TARGET@broker", err)
	}
	deny := func(reason string, r *refusal) *refusal {
		p.Refused(ctx, lifecycle.Refusal{User: user, Target: name, Reason: reason,
			Details: map[string]any{"client_addr": client, "login": login}})
		return r
	}
	tgt, ok := p.opts.Targets.FindTarget(name)
	if !ok || tgt.Kind != "ssh" {
		return nil, deny("unknown target", refuse("custos: unknown SSH target %q", name))
	}
	g, err := p.activeGrant(ctx, tgt, user, login)
	if err != nil {
		g, err = p.hold(st, tgt, user, login)
		if err != nil {
			return nil, deny("no active grant", noGrant(tgt, login, err))
		}
	}
	role, ok := tgt.FindRole(g.Role)
	if !ok {
		return nil, deny("role not configured", refuse("custos: role %q of your grant is not configured on %s", g.Role, name))
	}
	want := role.LoginOrDefault()
	if login != "" && login != want {
		return nil, deny("login not allowed", refuse("custos: login %q is not allowed by your grant on %s (role %s logs in as %q)", login, name, role.Name, want))
	}
	s, err := p.Open(lifecycle.Start{Grant: g, Target: tgt, Role: role, Account: want, ClientAddr: client})
	if err != nil {
		return nil, deny("broker shutting down", refuse("custos: the broker is shutting down"))
	}
	// The session is tracked: a revocation from here on ends its context,
	// and with it the upstream login.
	lctx, lcancel := context.WithTimeout(s.Context(), p.LoginTimeout())
	defer lcancel()
	fail := func(outcome, reason string, r *refusal) (*admission, *refusal) {
		if c, ok := lifecycle.AsCause(s.Cause()); ok {
			reason, r = c.Reason, refuse("custos: %s", brokerEnd(c).message)
		}
		s.Refuse(outcome, reason, map[string]any{"login": want})
		return nil, r
	}
	up, err := p.dialUpstream(lctx, s)
	if err != nil {
		p.Log().Warn("ssh upstream failed", "target", name, "session", s.ID, "err", err)
		if ce := (*credentialsError)(nil); errors.As(err, &ce) {
			return fail(broker.OutcomeError, "upstream: "+err.Error(),
				refuse("custos: cannot connect to %s: credentials unavailable; try again later", name))
		}
		return fail(broker.OutcomeError, "upstream: "+err.Error(), refuse("custos: cannot connect to %s: %v", name, err))
	}
	if err := s.StartRecording(lctx); err != nil {
		up.Close()
		p.Log().Error("ssh recording start failed", "target", name, "session", s.ID, "err", err)
		return fail(broker.OutcomeError, "recording unavailable", refuse("custos: session refused: recording is unavailable"))
	}
	if err := s.Admit(); err != nil {
		up.Close()
		return fail(broker.OutcomeDenied, err.Error(), refuse("custos: session refused"))
	}
	return &admission{core: s, upstream: up}, nil
}

// activeGrant finds the user's active grant on t. With a login, a grant
// for a role that logs in as it comes first (the one ending last), so a
// user holding grants for several roles picks one by login.
func (p *Proxy) activeGrant(ctx context.Context, t *config.Target, user, login string) (broker.Grant, error) {
	if login != "" {
		var best broker.Grant
		for i := range t.Roles {
			if t.Roles[i].LoginOrDefault() != login {
				continue
			}
			g, err := p.opts.Grants.ActiveGrantAs(ctx, user, t.Name, t.Roles[i].Name)
			if err == nil && g.EndsAt.After(best.EndsAt) {
				best = g
			}
		}
		if best.ID != "" {
			return best, nil
		}
	}
	return p.opts.Grants.ActiveGrantAs(ctx, user, t.Name, "")
}

// noGrant is the refusal for a user without an active grant, naming the
// command that asks for one.
func noGrant(t *config.Target, login string, cause error) *refusal {
	role := "ROLE"
	for i := range t.Roles {
		if login == "" || t.Roles[i].LoginOrDefault() == login {
			role = t.Roles[i].Name
			break
		}
	}
	r := refuse("no active grant for %s; run: custos request %s --role %s --for 1h --reason ...", t.Name, t.Name, role)
	r.err = fmt.Errorf("no active grant for %s: %w", t.Name, cause)
	return r
}

// hold waits at the banner for a grant when a role of the target allows
// it, up to the role's hold timeout. Without a hold policy it returns an
// error at once.
func (p *Proxy) hold(st *authState, t *config.Target, user, login string) (broker.Grant, error) {
	var role *config.Role
	for i := range t.Roles {
		if t.Roles[i].Policy.Hold && (login == "" || t.Roles[i].LoginOrDefault() == login) {
			role = &t.Roles[i]
			break
		}
	}
	if role == nil {
		return broker.Grant{}, errors.New("no active grant")
	}
	wait := role.Policy.HoldTimeout.D()
	if wait <= 0 {
		wait = 5 * time.Minute
	}
	st.banner(fmt.Sprintf("no active grant for %s; waiting up to %s for approval.\nIn another terminal run: custos request %s --role %s --for 1h --reason ...\n",
		t.Name, wait, t.Name, role.Name))
	deadline := p.opts.Now().Add(wait)
	_ = st.raw.SetDeadline(deadline.Add(p.LoginTimeout()))
	tick := time.NewTicker(holdPoll)
	defer tick.Stop()
	for {
		select {
		case <-p.Context().Done():
			return broker.Grant{}, context.Cause(p.Context())
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(p.Context(), p.LoginTimeout())
		g, err := p.activeGrant(ctx, t, user, login)
		cancel()
		if err == nil {
			st.banner("grant approved; connecting\n")
			return g, nil
		}
		if !p.opts.Now().Before(deadline) {
			return broker.Grant{}, fmt.Errorf("no grant within %s: %w", wait, err)
		}
	}
}

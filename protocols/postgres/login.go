package pgproxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/protocols/lifecycle"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// maxPasswordMessage bounds the PasswordMessage carrying the token.
const maxPasswordMessage = 4096

// loginRequest is what the client asked for, before authentication.
type loginRequest struct {
	conn       net.Conn
	tls        bool
	startup    *startup
	user       string
	target     string
	database   string // as named by the client; empty means the default
	role       string // the target role asked for with custos.role; "" for any
	options    string // the client's options without custos.role
	clientAddr string
}

// refusal is a login refused before a session exists. It carries what the
// audit record needs besides the client-visible error.
type refusal struct {
	*clientError
	grantID string
	// session is the tracked session the login was refused for, if any.
	session *lifecycle.Session
}

func refuse(ce *clientError) *refusal { return &refusal{clientError: ce} }

// checkStartup validates what can be refused before asking for a token:
// transport, replication and the user name.
func (p *Proxy) checkStartup(n *negotiated) (*loginRequest, *refusal) {
	st := n.startup
	req := &loginRequest{conn: n.conn, tls: n.tls, startup: st, user: st.get("user"), clientAddr: n.conn.RemoteAddr().String()}
	req.target, req.database = parseDBName(st.get("database"))
	req.role, req.options = splitRoleOption(st.get("options"))
	if req.target == "" {
		req.target = req.user
	}
	if !n.tls && !p.opts.AllowPlaintext {
		return req, refuse(&clientError{Code: codeInvalidAuthSpec,
			Msg:    "custos: TLS is required for connections to the broker",
			Detail: "Connect with sslmode=require (or verify-full with the broker's CA)."})
	}
	if replicationRequested(st) {
		return req, refuse(fatalf(codeInvalidAuthSpec, "custos: replication connections are not allowed through the broker"))
	}
	if req.user == "" {
		return req, refuse(fatalf(codeInvalidAuthSpec, "no PostgreSQL user name specified in startup packet"))
	}
	return req, nil
}

// readToken asks the client for its password (the connection token) in
// clear text, over TLS.
func readToken(conn net.Conn, st *startup) (string, error) {
	var out []byte
	if st.Minor > 0 || len(st.Options) > 0 {
		msg := &pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: st.Options}
		out, _ = msg.Encode(out)
	}
	out, _ = (&pgproto3.AuthenticationCleartextPassword{}).Encode(out)
	if _, err := conn.Write(out); err != nil {
		return "", fmt.Errorf("send password request: %w", err)
	}
	var hdr [headerLen]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	l := binary.BigEndian.Uint32(hdr[1:])
	if hdr[0] != 'p' {
		return "", fatalf(codeProtocolViolation, "expected password response, got message type %d", hdr[0])
	}
	if l < 5 || l-4 > maxPasswordMessage {
		return "", fatalf(codeProtocolViolation, "invalid password message length %d", l)
	}
	body := make([]byte, l-4)
	if _, err := io.ReadFull(conn, body); err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	tok, rest, ok := cstring(body)
	if !ok || len(rest) != 0 {
		return "", fatalf(codeProtocolViolation, "invalid password message")
	}
	return string(tok), nil
}

// authorize checks the token and the grant it maps to, and resolves the
// target and database.
func (p *Proxy) authorize(ctx context.Context, req *loginRequest, token string) (broker.Grant, *config.Target, string, *refusal) {
	g, err := p.opts.Auth.AuthenticateDB(ctx, req.user, token, req.target, req.role)
	if err != nil {
		return g, nil, "", refuse(&clientError{Code: codeInvalidPassword, Msg: err.Error(),
			Detail: fmt.Sprintf("The password must be a connection token from \"custos db token %s\" "+
				"for an active grant on that target.", req.target), err: err})
	}
	if g.User != req.user || g.Target != req.target {
		// Defense in depth: the authenticator must not return another
		// user's or target's grant.
		return g, nil, "", &refusal{grantID: g.ID, clientError: fatalf(codeInvalidPassword,
			"password authentication failed for user %q: token is not valid for this user and target", req.user)}
	}
	now := p.Clock().Now()
	if !p.Clock().Active(g) {
		msg := fmt.Sprintf("custos: no active grant for user %q on target %q: grant %s ended at %s",
			req.user, req.target, g.ID, g.EffectiveEnd().UTC().Format(time.RFC3339))
		if now.Before(g.StartsAt) {
			msg = fmt.Sprintf("custos: grant %s on target %q starts at %s", g.ID, req.target, g.StartsAt.UTC().Format(time.RFC3339))
		}
		return g, nil, "", &refusal{grantID: g.ID, clientError: fatalf(codeInvalidAuthSpec, "%s", msg)}
	}
	t, ok := p.opts.Targets.FindTarget(req.target)
	if !ok || t.Kind != "postgres" {
		return g, nil, "", &refusal{grantID: g.ID, clientError: fatalf(codeInvalidCatalog, "custos: %q is not a PostgreSQL target", req.target)}
	}
	db := req.database
	def := t.Postgres.Database
	if def == "" {
		def = "postgres"
	}
	if db == "" {
		db = def
	} else if db != def && !slices.Contains(t.Postgres.Databases, db) {
		return g, nil, "", &refusal{grantID: g.ID, clientError: fatalf(codeInvalidCatalog,
			"custos: database %q is not allowed on target %q", db, req.target)}
	}
	return g, t, db, nil
}

// upstreamParams are the client's startup parameters passed to the target:
// everything but the ones the broker decides (user, database) and refuses
// (replication), with the broker's own option taken out of options.
func upstreamParams(req *loginRequest) map[string]string {
	m := make(map[string]string, len(req.startup.Params))
	for _, kv := range req.startup.Params {
		switch kv.Key {
		case "user", "database", "replication":
			continue
		case "options":
			if req.options != "" {
				m[kv.Key] = req.options
			}
			continue
		}
		m[kv.Key] = kv.Value
	}
	return m
}

// roleOption is the run-time parameter that picks the target role to
// connect as (PGOPTIONS='-c custos.role=readwrite') when the user holds
// grants for several roles of one target.
const roleOption = "custos.role"

// splitRoleOption takes custos.role out of a startup options string,
// following PostgreSQL's rules: arguments separated by spaces, a backslash
// keeps the next character, and a setting is "-c name=value",
// "-cname=value" or "--name=value". It returns the role and the remaining
// options, escaped again.
func splitRoleOption(opts string) (role, rest string) {
	var args []string
	var cur strings.Builder
	inArg, esc := false, false
	for _, r := range opts {
		switch {
		case esc:
			cur.WriteRune(r)
			esc = false
		case r == '\\':
			esc, inArg = true, true
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteRune(r)
			inArg = true
		}
	}
	if inArg {
		args = append(args, cur.String())
	}
	setting := func(s string) (string, bool) {
		name, v, ok := strings.Cut(s, "=")
		if ok && strings.EqualFold(name, roleOption) {
			return v, true
		}
		return "", false
	}
	var kept []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-c" && i+1 < len(args):
			if v, ok := setting(args[i+1]); ok {
				role = v
				i++
				continue
			}
			kept = append(kept, a, args[i+1])
			i++
			continue
		case strings.HasPrefix(a, "-c"):
			if v, ok := setting(a[2:]); ok {
				role = v
				continue
			}
		case strings.HasPrefix(a, "--"):
			if v, ok := setting(a[2:]); ok {
				role = v
				continue
			}
		}
		kept = append(kept, a)
	}
	quote := strings.NewReplacer(`\`, `\\`, " ", `\ `, "\t", "\\\t", "\n", "\\\n", "\r", "\\\r")
	for i, k := range kept {
		kept[i] = quote.Replace(k)
	}
	return role, strings.Join(kept, " ")
}

// quoteDSN quotes a keyword/value connection string value.
func quoteDSN(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// dialUpstream logs in to the target with the issued credentials and takes
// over the connection once it is ready for queries.
func dialUpstream(ctx context.Context, t *config.Target, db, user, password string, params map[string]string) (*pgconn.HijackedConn, error) {
	cfg, err := upstreamConfig(t, db, user, password, params)
	if err != nil {
		return nil, err
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	// pgconn may have a background read in flight (started when a login
	// write was slow) or bytes buffered; either would steal the first
	// bytes of the relay. SyncConn settles both.
	if err := pc.SyncConn(ctx); err != nil {
		pc.Close(ctx)
		return nil, fmt.Errorf("sync upstream: %w", err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		pc.Close(ctx)
		return nil, fmt.Errorf("hijack: %w", err)
	}
	if hc.Frontend.ReadBufferLen() != 0 {
		hc.Conn.Close()
		return nil, errors.New("upstream sent data after ReadyForQuery")
	}
	return hc, nil
}

// upstreamConfig is the connection configuration for a login to t.
func upstreamConfig(t *config.Target, db, user, password string, params map[string]string) (*pgconn.Config, error) {
	host, port, err := net.SplitHostPort(t.Address)
	if err != nil {
		return nil, fmt.Errorf("target address %q: %w", t.Address, err)
	}
	mode := t.Postgres.TLS
	switch mode {
	case "":
		mode = "prefer"
	case "prefer", "require", "disable", "verify-ca", "verify-full":
	default:
		return nil, fmt.Errorf("target tls mode %q", mode)
	}
	dsn := fmt.Sprintf("host=%s port=%s dbname=%s user=%s sslmode=%s", quoteDSN(host), quoteDSN(port), quoteDSN(db), quoteDSN(user), mode)
	if ca := t.Postgres.CACert; ca != "" && (mode == "verify-ca" || mode == "verify-full") {
		dsn += " sslrootcert=" + quoteDSN(ca)
	}
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("upstream config: %w", err)
	}
	if name := t.Postgres.TLSServerName; name != "" {
		// verify-full checks the certificate against ServerName.
		if cfg.TLSConfig != nil {
			cfg.TLSConfig.ServerName = name
		}
		for _, fb := range cfg.Fallbacks {
			if fb.TLSConfig != nil {
				fb.TLSConfig.ServerName = name
			}
		}
	}
	cfg.Password = password
	cfg.RuntimeParams = params
	dial := cfg.DialFunc
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return direct(c), nil
	}
	return cfg, nil
}

// upstreamRefusal turns an upstream login failure into what the client
// sees: the target's own error for problems the user can act on (database
// missing, too many connections), a generic one otherwise (credentials are
// the broker's business).
func upstreamRefusal(target string, err error) *clientError {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && !strings.HasPrefix(pe.Code, "28") {
		return &clientError{Code: pe.Code, Msg: fmt.Sprintf("custos: target %q: %s", target, pe.Message), err: err}
	}
	return &clientError{Code: codeConnectionFailure, Msg: fmt.Sprintf("custos: cannot log in to target %q", target), err: err}
}

// welcome is what the client receives once the session is ready:
// AuthenticationOk, the target's ParameterStatus messages, BackendKeyData
// with the target backend's PID and the broker's own secret, and
// ReadyForQuery.
func welcome(hc *pgconn.HijackedConn, pid uint32, secret []byte) []byte {
	out, _ := (&pgproto3.AuthenticationOk{}).Encode(nil)
	keys := make([]string, 0, len(hc.ParameterStatuses))
	for k := range hc.ParameterStatuses {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		out, _ = (&pgproto3.ParameterStatus{Name: k, Value: hc.ParameterStatuses[k]}).Encode(out)
	}
	out, _ = (&pgproto3.BackendKeyData{ProcessID: pid, SecretKey: secret}).Encode(out)
	tx := hc.TxStatus
	if tx == 0 {
		tx = 'I'
	}
	out, _ = (&pgproto3.ReadyForQuery{TxStatus: tx}).Encode(out)
	return out
}

package cli

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/spf13/cobra"
)

// Startup packet codes and limits of the PostgreSQL protocol.
const (
	pgSSLRequestCode    = 80877103
	pgGSSEncRequestCode = 80877104
	pgCancelRequestCode = 80877102
	// pgMaxStartupLen is PostgreSQL's MAX_STARTUP_PACKET_LENGTH.
	pgMaxStartupLen = 10000
	// tunnelMaxBody bounds each message read from the broker during login.
	tunnelMaxBody = 64 << 10
	// tunnelLoginTimeout bounds a local client's startup and the broker login.
	tunnelLoginTimeout = 30 * time.Second
)

// tunnel accepts local PostgreSQL clients on loopback and logs each one in
// to the broker's PostgreSQL proxy with the user's connection token.
type tunnel struct {
	fetch  func(context.Context) (dbToken, error)
	roots  *x509.CertPool
	stderr io.Writer
	now    func() time.Time

	fetching sync.Mutex
	mu       sync.Mutex
	tok      dbToken
	fetched  time.Time
	// keys are the cancel keys the broker gave this tunnel's live sessions.
	keys  map[uint32][]byte
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newDBProxyCmd(g *globals, fetch func(*cobra.Command, string) (dbToken, error)) *cobra.Command {
	var port int
	var listen string
	cmd := &cobra.Command{
		Use:   "proxy TARGET",
		Short: "Open a local tunnel to the target for GUI clients and connection pools",
		Long: `Listens on a loopback port; each PostgreSQL client connecting there is logged in to
the broker's PostgreSQL proxy as you, with a connection token the tunnel fetches and
refreshes. Local clients need no password: anyone who can connect to the port on this
machine uses your grant, so the tunnel only listens on loopback.`,
		Example: `  custos db proxy demo-pg --port 15432
  psql "host=127.0.0.1 port=15432 dbname=demo-pg sslmode=disable"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := g.jsonOutput()
			if err != nil {
				return err
			}
			if ip := net.ParseIP(listen); listen != "localhost" && (ip == nil || !ip.IsLoopback()) {
				return fmt.Errorf("db proxy: --listen %q is not a loopback address: the tunnel does not ask local clients for a password", listen)
			}
			target := args[0]
			if err := g.resolveBroker(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			cmd.SetContext(ctx)
			tn := &tunnel{fetch: func(context.Context) (dbToken, error) { return fetch(cmd, target) },
				roots: brokerRoots(g.caCert), stderr: g.stderr, now: time.Now}
			// The first token up front: no grant or no login fails here,
			// not in the first GUI connection.
			tok, err := tn.token(ctx, false)
			if err != nil {
				return fmt.Errorf("db proxy: %w", err)
			}
			ln, err := net.Listen("tcp", net.JoinHostPort(listen, strconv.Itoa(port)))
			if err != nil {
				return fmt.Errorf("db proxy: listen: %w", err)
			}
			addr := ln.Addr().(*net.TCPAddr)
			if asJSON {
				if err := g.printJSON(map[string]any{"listen": addr.String(), "host": addr.IP.String(), "port": addr.Port,
					"target": target, "user": tok.User, "role": tok.Role, "broker": net.JoinHostPort(tok.Host, tok.Port)}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(g.stdout, "Tunnel to %s (as %s, role %s) listening on %s\n", target, tok.User, tok.Role, addr)
				fmt.Fprintf(g.stdout, "Connect with: psql \"host=%s port=%d dbname=%s sslmode=disable\" (no password)\n", addr.IP, addr.Port, target)
				fmt.Fprintln(g.stdout, "Anyone who can reach this port on this machine uses your grant. Press Ctrl-C to stop.")
			}
			return tn.serve(ctx, ln)
		},
	}
	cmd.Flags().IntVar(&port, "port", 0, "local port to listen on (default: a free port, printed)")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1", "loopback address to listen on")
	return cmd
}

// serve accepts local clients until ctx ends, then closes every live
// connection and waits for their handlers.
func (tn *tunnel) serve(ctx context.Context, ln net.Listener) error {
	tn.mu.Lock()
	tn.keys, tn.conns = map[uint32][]byte{}, map[net.Conn]struct{}{}
	tn.mu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		tn.mu.Lock()
		for c := range tn.conns {
			c.Close()
		}
		tn.conns = nil
		tn.mu.Unlock()
	})
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			tn.wg.Wait()
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("db proxy: accept: %w", err)
		}
		if !tn.track(c, true) {
			c.Close()
			continue
		}
		tn.wg.Go(func() {
			defer tn.track(c, false)
			defer c.Close()
			if err := tn.handle(ctx, c); err != nil {
				fmt.Fprintf(tn.stderr, "custos: db proxy: client %s: %v\n", c.RemoteAddr(), err)
			}
		})
	}
}

// track adds or removes a live connection; it refuses new ones once the
// tunnel closes.
func (tn *tunnel) track(c net.Conn, add bool) bool {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	if !add {
		delete(tn.conns, c)
		return true
	}
	if tn.conns == nil {
		return false
	}
	tn.conns[c] = struct{}{}
	return true
}

// token returns a connection token valid for a while yet, fetching a new
// one when the cached one is in the last third of its life (or force).
func (tn *tunnel) token(ctx context.Context, force bool) (dbToken, error) {
	// fetching serializes refreshes, so concurrent logins share one; mu
	// is not held across the HTTP call, so cancels are not held up.
	tn.fetching.Lock()
	defer tn.fetching.Unlock()
	tn.mu.Lock()
	cached, fetched := tn.tok, tn.fetched
	tn.mu.Unlock()
	now := tn.now()
	if !force && cached.Token != "" {
		margin := min(cached.ExpiresAt.Sub(fetched)/3, time.Minute)
		if now.Add(margin).Before(cached.ExpiresAt) {
			return cached, nil
		}
	}
	t, err := tn.fetch(ctx)
	if err != nil {
		return dbToken{}, err
	}
	tn.mu.Lock()
	tn.tok, tn.fetched = t, now
	tn.mu.Unlock()
	return t, nil
}

// handle serves one local client: its startup phase (no TLS, no password
// asked), the broker login, then a byte relay.
func (tn *tunnel) handle(ctx context.Context, c net.Conn) error {
	c.SetDeadline(time.Now().Add(tunnelLoginTimeout))
	st, err := readLocalStartup(c)
	if err != nil {
		return err
	}
	if st.cancel != nil {
		return tn.forwardCancel(ctx, st.cancel)
	}
	up, key, err := tn.login(ctx, c, st.startup)
	if err != nil {
		return err
	}
	defer up.Close()
	tn.mu.Lock()
	tn.keys[key.ProcessID] = key.SecretKey
	tn.mu.Unlock()
	defer func() {
		tn.mu.Lock()
		delete(tn.keys, key.ProcessID)
		tn.mu.Unlock()
	}()
	c.SetDeadline(time.Time{})
	up.SetDeadline(time.Time{})
	errc := make(chan error, 2)
	go func() { _, err := io.Copy(up, c); errc <- err }()
	go func() { _, err := io.Copy(c, up); errc <- err }()
	<-errc
	// Either side ending ends the session: closing both unblocks the
	// other copier.
	c.Close()
	up.Close()
	<-errc
	return nil
}

// localStartup is what a local client sent to begin: a StartupMessage or a
// CancelRequest.
type localStartup struct {
	startup *pgproto3.StartupMessage
	cancel  *pgproto3.CancelRequest
}

// readLocalStartup runs the local startup phase unbuffered: SSLRequest and
// GSSENCRequest are answered 'N' (the connection stays on loopback), then
// a StartupMessage or CancelRequest ends it.
func readLocalStartup(c net.Conn) (localStartup, error) {
	for round := 0; round < 4; round++ {
		var hdr [4]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return localStartup{}, fmt.Errorf("read startup packet: %w", err)
		}
		l := binary.BigEndian.Uint32(hdr[:])
		if l < 8 || l > pgMaxStartupLen {
			return localStartup{}, localFatal(c, "08P01", "invalid startup packet length")
		}
		body := make([]byte, l-4)
		if _, err := io.ReadFull(c, body); err != nil {
			return localStartup{}, fmt.Errorf("read startup packet: %w", err)
		}
		switch binary.BigEndian.Uint32(body) {
		case pgSSLRequestCode, pgGSSEncRequestCode:
			if _, err := c.Write([]byte{'N'}); err != nil {
				return localStartup{}, err
			}
		case pgCancelRequestCode:
			cr := &pgproto3.CancelRequest{}
			if err := cr.Decode(body); err != nil {
				return localStartup{}, fmt.Errorf("cancel request: %w", err)
			}
			return localStartup{cancel: cr}, nil
		default:
			sm := &pgproto3.StartupMessage{}
			if err := sm.Decode(body); err != nil {
				return localStartup{}, localFatal(c, "08P01", "invalid startup packet")
			}
			return localStartup{startup: sm}, nil
		}
	}
	return localStartup{}, localFatal(c, "08P01", "too many negotiation requests")
}

// localFatal sends the local client a FATAL error and returns it.
func localFatal(c net.Conn, code, msg string) error {
	b, _ := (&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: "custos: " + msg}).Encode(nil)
	c.Write(b)
	return errors.New(msg)
}

// dialBroker opens a TLS connection to the broker's PostgreSQL proxy,
// verifying its certificate for the host the broker names.
func (tn *tunnel) dialBroker(ctx context.Context, t dbToken) (*tls.Conn, error) {
	addr := net.JoinHostPort(t.Host, t.Port)
	d := net.Dialer{Timeout: 10 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial broker %s: %w", addr, err)
	}
	raw.SetDeadline(time.Now().Add(tunnelLoginTimeout))
	req, _ := (&pgproto3.SSLRequest{}).Encode(nil)
	var answer [1]byte
	if _, err := raw.Write(req); err == nil {
		_, err = io.ReadFull(raw, answer[:])
	}
	if err != nil || answer[0] != 'S' {
		raw.Close()
		return nil, fmt.Errorf("broker %s: TLS not offered (%v)", addr, err)
	}
	tc := tls.Client(raw, &tls.Config{ServerName: t.Host, RootCAs: tn.roots, MinVersion: tls.VersionTLS12, NextProtos: []string{"postgresql"}})
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("broker %s: tls: %w", addr, err)
	}
	return tc, nil
}

// login logs the local client in to the broker: the local startup's
// parameters with the broker's user and target, the token as the password,
// and every message up to ReadyForQuery relayed to the client. A refused
// cached token is fetched again once, on a new connection.
func (tn *tunnel) login(ctx context.Context, c net.Conn, st *pgproto3.StartupMessage) (*tls.Conn, *pgproto3.BackendKeyData, error) {
	for attempt := 0; ; attempt++ {
		tok, err := tn.token(ctx, attempt > 0)
		if err != nil {
			return nil, nil, localFatal(c, "28000", "cannot get a connection token: "+err.Error())
		}
		up, key, retry, err := tn.loginOnce(ctx, c, st, tok, attempt == 0)
		if retry {
			continue
		}
		return up, key, err
	}
}

// loginOnce is one login attempt. retry reports a password refusal of a
// token that may have expired, before anything reached the client.
func (tn *tunnel) loginOnce(ctx context.Context, c net.Conn, st *pgproto3.StartupMessage, tok dbToken, mayRetry bool) (_ *tls.Conn, _ *pgproto3.BackendKeyData, retry bool, _ error) {
	up, err := tn.dialBroker(ctx, tok)
	if err != nil {
		return nil, nil, false, localFatal(c, "08001", err.Error())
	}
	ok := false
	defer func() {
		if !ok {
			up.Close()
		}
	}()
	fe := pgproto3.NewFrontend(up, up)
	fe.SetMaxBodyLen(tunnelMaxBody)
	fe.Send(upstreamStartup(st, tok))
	if err := fe.Flush(); err != nil {
		return nil, nil, false, localFatal(c, "08006", "send startup to the broker: "+err.Error())
	}
	var out []byte
	var key *pgproto3.BackendKeyData
	for {
		msg, err := fe.Receive()
		if err != nil {
			return nil, nil, false, localFatal(c, "08006", "broker login: "+err.Error())
		}
		switch m := msg.(type) {
		case *pgproto3.AuthenticationCleartextPassword:
			fe.Send(&pgproto3.PasswordMessage{Password: tok.Token})
			if err := fe.Flush(); err != nil {
				return nil, nil, false, localFatal(c, "08006", "send token to the broker: "+err.Error())
			}
			continue
		case *pgproto3.AuthenticationMD5Password, *pgproto3.AuthenticationSASL, *pgproto3.AuthenticationGSS:
			return nil, nil, false, localFatal(c, "08006", "the broker asked for an unexpected authentication method")
		case *pgproto3.ErrorResponse:
			if mayRetry && m.Code == "28P01" && len(out) == 0 {
				return nil, nil, true, nil
			}
			// The broker's error, as it sent it: the client shows why.
			b, _ := m.Encode(out)
			c.Write(b)
			return nil, nil, false, fmt.Errorf("broker refused the login: %s", m.Message)
		case *pgproto3.BackendKeyData:
			key = &pgproto3.BackendKeyData{ProcessID: m.ProcessID, SecretKey: bytes.Clone(m.SecretKey)}
		case *pgproto3.ReadyForQuery:
			if out, err = m.Encode(out); err != nil {
				return nil, nil, false, err
			}
			if fe.ReadBufferLen() != 0 {
				return nil, nil, false, localFatal(c, "08P01", "the broker sent data after ReadyForQuery")
			}
			if _, err := c.Write(out); err != nil {
				return nil, nil, false, fmt.Errorf("write to client: %w", err)
			}
			if key == nil {
				key = &pgproto3.BackendKeyData{}
			}
			ok = true
			return up, key, false, nil
		}
		if out, err = msg.Encode(out); err != nil {
			return nil, nil, false, fmt.Errorf("relay %T: %w", msg, err)
		}
	}
}

// upstreamStartup is the local client's StartupMessage as sent to the
// broker: user and target from the token; the client's database, unless
// it is empty, the target or its user name, picks a database of the
// target; --role is added to options.
func upstreamStartup(st *pgproto3.StartupMessage, tok dbToken) *pgproto3.StartupMessage {
	params := make(map[string]string, len(st.Parameters)+2)
	for k, v := range st.Parameters {
		switch k {
		case "user", "database", "replication":
			continue
		}
		params[k] = v
	}
	db := st.Parameters["database"]
	switch {
	case db == "" || db == tok.Target || db == st.Parameters["user"]:
		db = tok.Target
	case !strings.HasPrefix(db, tok.Target+"/"):
		db = tok.Target + "/" + db
	}
	params["user"], params["database"] = tok.User, db
	if tok.Options != "" {
		params["options"] = strings.TrimSpace(params["options"] + " " + tok.Options)
	}
	return &pgproto3.StartupMessage{ProtocolVersion: st.ProtocolVersion, Parameters: params}
}

// forwardCancel sends the broker a local client's CancelRequest when it
// names one of this tunnel's live sessions; others are dropped, as
// PostgreSQL drops unknown keys.
func (tn *tunnel) forwardCancel(ctx context.Context, cr *pgproto3.CancelRequest) error {
	tn.mu.Lock()
	secret, ok := tn.keys[cr.ProcessID]
	tok := tn.tok
	tn.mu.Unlock()
	if !ok || subtle.ConstantTimeCompare(secret, cr.SecretKey) != 1 {
		return nil
	}
	up, err := tn.dialBroker(ctx, tok)
	if err != nil {
		return fmt.Errorf("cancel: %w", err)
	}
	defer up.Close()
	b, err := cr.Encode(nil)
	if err != nil {
		return fmt.Errorf("cancel: %w", err)
	}
	if _, err := up.Write(b); err != nil {
		return fmt.Errorf("cancel: %w", err)
	}
	// The broker closes the connection once the target took the cancel.
	up.SetReadDeadline(time.Now().Add(5 * time.Second))
	up.Read(make([]byte, 1))
	return nil
}

package breakglass

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/creds"
)

// loginTimeout bounds each login the broker makes to a target itself
// (drill probes and rotation checks).
const loginTimeout = 15 * time.Second

// sqlInvalidPassword is PostgreSQL's invalid_password SQLSTATE, the only
// refusal that proves an old password is dead.
const sqlInvalidPassword = "28P01"

// pgConnect logs in to a PostgreSQL target as user with password, with the
// target's database, TLS mode and CA certificates.
func pgConnect(ctx context.Context, t *config.Target, user, password string) (*pgconn.PgConn, error) {
	host, port, err := net.SplitHostPort(t.Address)
	if err != nil {
		return nil, fmt.Errorf("target address %q: %w", t.Address, err)
	}
	db, mode := t.Postgres.Database, t.Postgres.TLS
	if db == "" {
		db = "postgres"
	}
	if mode == "" {
		mode = "prefer"
	}
	dsn := fmt.Sprintf("host=%s port=%s dbname=%s user=%s sslmode=%s connect_timeout=%d",
		quote(host), quote(port), quote(db), quote(user), mode, int(loginTimeout/time.Second))
	if t.Postgres.CACert != "" {
		// verify-full and verify-ca chain to the target's own CAs, as the
		// proxy's connections do.
		dsn += " sslrootcert=" + quote(t.Postgres.CACert)
	}
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("connection config: %w", err)
	}
	cfg.Password = password
	ctx, cancel := context.WithTimeout(ctx, loginTimeout)
	defer cancel()
	return pgconn.ConnectConfig(ctx, cfg)
}

func quote(v string) string {
	var b bytes.Buffer
	b.WriteByte('\'')
	for _, r := range v {
		if r == '\'' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('\'')
	return b.String()
}

// pgRejected reports whether a login error is the target refusing the
// password (and not, say, the target being unreachable).
func pgRejected(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == sqlInvalidPassword
}

// pgExec runs sql and returns the command tags of its results.
func pgExec(ctx context.Context, c *pgconn.PgConn, sql string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, loginTimeout)
	defer cancel()
	res, err := c.Exec(ctx, sql).ReadAll()
	if err != nil {
		return "", err
	}
	var tags []byte
	for i, r := range res {
		if r.Err != nil {
			return "", r.Err
		}
		if i > 0 {
			tags = append(tags, "; "...)
		}
		tags = append(tags, r.CommandTag.String()...)
	}
	return string(tags), nil
}

// sshDial logs in to an SSH target with the certificate, checking the
// target's host key against its configuration.
func sshDial(ctx context.Context, t *config.Target, cert creds.SSHCert) (*ssh.Client, error) {
	cfg := &ssh.ClientConfig{User: cert.Login, Auth: []ssh.AuthMethod{ssh.PublicKeys(cert.Signer)},
		HostKeyCallback: creds.HostKeyCallback(*t), Timeout: loginTimeout}
	d := net.Dialer{Timeout: loginTimeout}
	ctx, cancel := context.WithTimeout(ctx, loginTimeout)
	defer cancel()
	nc, err := d.DialContext(ctx, "tcp", t.Address)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Now()) })
	cc, chans, reqs, err := ssh.NewClientConn(nc, t.Address, cfg)
	if !stop() || err != nil {
		nc.Close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, err
	}
	return ssh.NewClient(cc, chans, reqs), nil
}

// sshRun runs command in a session of client; a non-zero exit is an
// error. It returns the combined output.
func sshRun(ctx context.Context, client *ssh.Client, command string) ([]byte, error) {
	sess, err := client.NewSession()
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	ctx, cancel := context.WithTimeout(ctx, loginTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = client.Close() })
	defer stop()
	return sess.CombinedOutput(command)
}

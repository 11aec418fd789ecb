package creds

import (
	"errors"
	"log/slog"
	"time"

	"golang.org/x/crypto/ssh"
)

// ErrVaultUnreachable means Vault did not answer (connection refused, timed
// out, sealed). Its message is what a user trying to connect is shown.
var ErrVaultUnreachable = errors.New("credentials unavailable: vault unreachable")

// ErrGrantEnded means credentials were asked for a grant that is not, or no
// longer, active.
var ErrGrantEnded = errors.New("credentials unavailable: grant not active")

// Lease is a dynamic database login issued for a grant (shared by its
// sessions) or for one session. Password is the only secret: Lease formats
// and logs without it.
type Lease struct {
	Username string
	Password string
	// LeaseID is Vault's lease, revoked when the grant (or session) ends.
	LeaseID string
	// ExpiresAt is when the login stops working at the latest; never after
	// the grant's end.
	ExpiresAt time.Time
	GrantID   string
	// SessionID is set for per-session credentials, empty for per-grant.
	SessionID string
}

// String describes the lease without its password.
func (l Lease) String() string {
	return "lease " + l.LeaseID + " user " + l.Username + " until " + l.ExpiresAt.UTC().Format(time.RFC3339)
}

// LogValue keeps the password out of structured logs.
func (l Lease) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("username", l.Username),
		slog.String("lease_id", l.LeaseID),
		slog.Time("expires_at", l.ExpiresAt),
		slog.String("grant_id", l.GrantID),
		slog.String("session_id", l.SessionID),
	)
}

// SSHCert is a certificate signed for one session's ephemeral key.
type SSHCert struct {
	// Signer signs with the ephemeral private key and presents the
	// certificate; use it with ssh.PublicKeys.
	Signer      ssh.Signer
	Certificate *ssh.Certificate
	// Login is the principal the certificate is valid for.
	Login string
	// KeyID names user, grant and session; sshd logs it.
	KeyID string
	// ValidBefore is the certificate's end, never after the grant's end.
	ValidBefore time.Time
}

// LogValue keeps key material out of structured logs.
func (c SSHCert) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("key_id", c.KeyID),
		slog.String("login", c.Login),
		slog.Time("valid_before", c.ValidBefore),
	)
}

package sshproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/protocols/lifecycle"
)

// dialUpstream connects to the session's target as the role's login,
// authenticating with the per-session certificate and checking the host key
// against the target's pins.
func (p *Proxy) dialUpstream(ctx context.Context, s *lifecycle.Session) (*ssh.Client, error) {
	hk, algos, err := HostKeyPolicy(s.Target)
	if err != nil {
		return nil, err
	}
	signer, err := p.opts.Credentials.SSHSigner(ctx, s.Grant, s.ID)
	if err != nil {
		return nil, &credentialsError{err: err}
	}
	cfg := &ssh.ClientConfig{
		User:              s.Account,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   hk,
		HostKeyAlgorithms: algos,
		ClientVersion:     "SSH-2.0-Custos",
		Config:            upstreamCrypto(),
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", s.Target.Address)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", s.Target.Address, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	conn, chans, reqs, err := ssh.NewClientConn(c, s.Target.Address, cfg)
	stop()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	_ = c.SetDeadline(time.Time{})
	setNoDelay(c)
	return ssh.NewClient(conn, chans, reqs), nil
}

// HostKeyPolicy returns the host key check for an SSH target: a key pinned
// in ssh.host_keys, or a certificate signed by ssh.host_ca. Anything else is
// refused. It also returns the host key algorithms to negotiate, so a
// server that has several keys presents a pinned one.
func HostKeyPolicy(t *config.Target) (ssh.HostKeyCallback, []string, error) {
	lines, err := config.ResolveLines(t.SSH.HostKeys)
	if err != nil {
		return nil, nil, fmt.Errorf("host keys of %s: %w", t.Name, err)
	}
	var pinned []ssh.PublicKey
	var algos []string
	for _, l := range lines {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(l))
		if err != nil {
			return nil, nil, fmt.Errorf("host keys of %s: %w", t.Name, err)
		}
		pinned = append(pinned, k)
		algos = appendAlgos(algos, k.Type(), false)
	}
	var ca ssh.PublicKey
	if t.SSH.HostCA != "" {
		lines, err := config.ResolveLines([]string{t.SSH.HostCA})
		if err != nil || len(lines) == 0 {
			return nil, nil, fmt.Errorf("host CA of %s: %v", t.Name, err)
		}
		ca, _, _, _, err = ssh.ParseAuthorizedKey([]byte(lines[0]))
		if err != nil {
			return nil, nil, fmt.Errorf("host CA of %s: %w", t.Name, err)
		}
		for _, typ := range []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoRSA} {
			algos = appendAlgos(algos, typ, true)
		}
	}
	if len(pinned) == 0 && ca == nil {
		return nil, nil, errors.New("no host key pinned")
	}
	checker := &ssh.CertChecker{
		IsHostAuthority: func(auth ssh.PublicKey, _ string) bool {
			return ca != nil && bytes.Equal(auth.Marshal(), ca.Marshal())
		},
		HostKeyFallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			b := key.Marshal()
			for _, k := range pinned {
				if bytes.Equal(k.Marshal(), b) {
					return nil
				}
			}
			return fmt.Errorf("host key %s is not trusted for %s", ssh.FingerprintSHA256(key), t.Name)
		},
	}
	return checker.CheckHostKey, algos, nil
}

// appendAlgos adds the signature algorithms for a key type.
func appendAlgos(algos []string, keyType string, cert bool) []string {
	var add []string
	switch keyType {
	case ssh.KeyAlgoRSA:
		add = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
		if cert {
			add = []string{ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSAv01}
		}
	default:
		add = []string{keyType}
		if cert {
			add = []string{certAlgo(keyType)}
		}
	}
	for _, a := range add {
		if a != "" && !slices.Contains(algos, a) {
			algos = append(algos, a)
		}
	}
	return algos
}

func certAlgo(keyType string) string {
	switch keyType {
	case ssh.KeyAlgoED25519:
		return ssh.CertAlgoED25519v01
	case ssh.KeyAlgoECDSA256:
		return ssh.CertAlgoECDSA256v01
	case ssh.KeyAlgoECDSA384:
		return ssh.CertAlgoECDSA384v01
	case ssh.KeyAlgoECDSA521:
		return ssh.CertAlgoECDSA521v01
	}
	return ""
}

func setNoDelay(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
}

// credentialsError is a failure to get the session's upstream certificate
// (Vault unreachable, sealed or refusing). The user is told only that
// credentials are unavailable; the cause goes to the log and the audit.
type credentialsError struct{ err error }

func (e *credentialsError) Error() string { return "credentials unavailable: " + e.err.Error() }
func (e *credentialsError) Unwrap() error { return e.err }

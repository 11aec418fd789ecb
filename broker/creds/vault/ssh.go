package vault

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"sort"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/creds"
)

// The extensions a session certificate may carry: permit-pty when the role
// allows a shell, permit-port-forwarding when it allows local port
// forwarding. Agent and X11 forwarding are never granted upstream.
const (
	permitPTY            = "permit-pty"
	permitPortForwarding = "permit-port-forwarding"
)

// sshExtensions are the certificate extensions role r's sessions need.
func sshExtensions(r *config.Role) map[string]string {
	exts := map[string]string{}
	if r.ShellAllowed() {
		exts[permitPTY] = ""
	}
	if r.AllowPortForward {
		exts[permitPortForwarding] = ""
	}
	return exts
}

// KeyID is the certificate key id for a session: it names user, grant and
// session, and lands in the target's auth log.
func KeyID(user, grantID, sessionID string) string {
	return "custos:user=" + user + ":grant=" + grantID + ":session=" + sessionID
}

// SSHForSession signs a fresh Ed25519 key for one session of grant g with
// the SSH CA (<ssh_mount>/sign/<vault_role>): valid for the role's login
// only, until the grant's end at the latest (and SSHCertTTL, since it is
// only needed for the upstream handshake), with permit-pty only when the
// role allows a shell, permit-port-forwarding only when it allows port
// forwarding, and nothing else. The private key never leaves the
// process. Errors wrap creds.ErrVaultUnreachable when Vault does not
// answer and creds.ErrGrantEnded when the grant is over.
func (i *Issuer) SSHForSession(ctx context.Context, g broker.Grant, sessionID string) (creds.SSHCert, error) {
	cert, err := i.signSSH(ctx, g, sessionID)
	if err != nil {
		outcome := broker.OutcomeError
		if errors.Is(err, creds.ErrGrantEnded) {
			outcome = broker.OutcomeDenied
		}
		if _, aerr := i.audit.Append(ctx, audit.Entry{Actor: g.User, Action: "creds.issue", Target: g.Target,
			Outcome: outcome, Reason: err.Error(), Details: map[string]any{
				"kind": "ssh", "grant_id": g.ID, "session_id": sessionID},
		}); aerr != nil {
			i.log.Error("audit creds.issue failure", "grant_id", g.ID, "err", aerr)
		}
		i.log.Warn("ssh certificate not issued", "grant_id", g.ID, "session_id", sessionID, "err", err)
		return creds.SSHCert{}, fmt.Errorf("creds: grant %s: %w", g.ID, err)
	}
	return cert, nil
}

func (i *Issuer) signSSH(ctx context.Context, g broker.Grant, sessionID string) (creds.SSHCert, error) {
	_, r, err := i.role(g, "ssh")
	if err != nil {
		return creds.SSHCert{}, err
	}
	if sessionID == "" {
		return creds.SSHCert{}, errors.New("ssh certificate needs a session id")
	}
	left, err := i.checkActive(g)
	if err != nil {
		return creds.SSHCert{}, err
	}
	ttl := min(left, i.sshTTL)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return creds.SSHCert{}, fmt.Errorf("generate key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return creds.SSHCert{}, fmt.Errorf("generate key: %w", err)
	}
	login := r.LoginOrDefault()
	keyID := KeyID(g.User, g.ID, sessionID)
	exts := sshExtensions(r)
	req := map[string]any{
		"public_key":       string(ssh.MarshalAuthorizedKey(sshPub)),
		"valid_principals": login,
		"cert_type":        "user",
		"key_id":           keyID,
		"ttl":              fmt.Sprintf("%ds", int64(ttl/time.Second)),
	}
	if len(exts) > 0 {
		req["extensions"] = exts
	}
	vaultRole := r.VaultRoleOrDefault()
	path := i.c.cfg.SSHMount + "/sign/" + vaultRole
	s, err := i.c.write(ctx, path, req)
	if err != nil {
		return creds.SSHCert{}, err
	}
	signed, _ := s.Data["signed_key"].(string)
	pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(signed))
	if err != nil {
		return creds.SSHCert{}, fmt.Errorf("vault: %s: parse certificate: %w", path, err)
	}
	cert, ok := pk.(*ssh.Certificate)
	if !ok {
		return creds.SSHCert{}, fmt.Errorf("vault: %s: response is not a certificate", path)
	}
	// Trust but verify: a role with default extensions or a longer TTL
	// must not widen what this session gets.
	validBefore := time.Unix(int64(cert.ValidBefore), 0)
	switch {
	case cert.CertType != ssh.UserCert || cert.KeyId != keyID:
		return creds.SSHCert{}, fmt.Errorf("vault: %s: certificate type or key id differs from the request", path)
	case len(cert.ValidPrincipals) != 1 || cert.ValidPrincipals[0] != login:
		return creds.SSHCert{}, fmt.Errorf("vault: %s: certificate principals %v, want [%s]", path, cert.ValidPrincipals, login)
	case validBefore.After(g.EffectiveEnd()):
		return creds.SSHCert{}, fmt.Errorf("vault: %s: certificate valid until %s, after the grant's end", path, validBefore.UTC())
	case string(cert.Key.Marshal()) != string(sshPub.Marshal()):
		return creds.SSHCert{}, fmt.Errorf("vault: %s: certificate is for another key", path)
	}
	for ext := range cert.Extensions {
		if _, asked := exts[ext]; !asked {
			return creds.SSHCert{}, fmt.Errorf("vault: %s: certificate carries extension %q the role does not allow (check the Vault role's default_extensions)", path, ext)
		}
	}
	keySigner, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return creds.SSHCert{}, fmt.Errorf("signer: %w", err)
	}
	signer, err := ssh.NewCertSigner(cert, keySigner)
	if err != nil {
		return creds.SSHCert{}, fmt.Errorf("signer: %w", err)
	}
	got := make([]string, 0, len(cert.Extensions))
	for ext := range cert.Extensions {
		got = append(got, ext)
	}
	sort.Strings(got)
	serial, _ := s.Data["serial_number"].(string)
	if _, err := i.audit.Append(ctx, audit.Entry{Actor: g.User, Action: "creds.issue", Target: g.Target,
		Outcome: broker.OutcomeSuccess, Details: map[string]any{
			"kind": "ssh", "grant_id": g.ID, "session_id": sessionID, "vault_role": vaultRole,
			"login": login, "key_id": keyID, "serial": serial, "extensions": got,
			"valid_before": validBefore.UTC()},
	}); err != nil {
		return creds.SSHCert{}, fmt.Errorf("audit: %w", err)
	}
	i.log.Info("ssh certificate issued", "grant_id", g.ID, "session_id", sessionID, "key_id", keyID,
		"serial", serial, "valid_before", validBefore.UTC())
	return creds.SSHCert{Signer: signer, Certificate: cert, Login: login, KeyID: keyID, ValidBefore: validBefore}, nil
}

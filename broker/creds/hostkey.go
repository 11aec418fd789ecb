package creds

import (
	"bytes"
	"errors"
	"fmt"
	"net"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker/config"
)

// ErrUnknownHostKey means a target presented a host key that is neither
// pinned in config nor certified by the target's host CA.
var ErrUnknownHostKey = errors.New("unknown host key")

// HostKeyCallback verifies an SSH target's host key against the keys pinned
// in target.SSH.HostKeys (authorized_keys lines, or file: references to
// them) or, for a host certificate, against target.SSH.HostCA. Anything
// else is refused with an error wrapping ErrUnknownHostKey that names the
// target and the key's fingerprint. A configuration that cannot be parsed
// refuses every key.
func HostKeyCallback(target config.Target) ssh.HostKeyCallback {
	pinned, ca, err := parseHostTrust(target.SSH)
	if err != nil {
		err = fmt.Errorf("ssh target %s: host keys: %w", target.Name, err)
		return func(string, net.Addr, ssh.PublicKey) error { return err }
	}
	checker := &ssh.CertChecker{
		IsHostAuthority: func(auth ssh.PublicKey, _ string) bool {
			return ca != nil && bytes.Equal(auth.Marshal(), ca.Marshal())
		},
	}
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		if cert, ok := key.(*ssh.Certificate); ok {
			if ca != nil {
				if err := checker.CheckHostKey(hostname, remote, key); err != nil {
					return fmt.Errorf("ssh target %s: host certificate %q: %w: %w", target.Name, cert.KeyId, ErrUnknownHostKey, err)
				}
				return nil
			}
			key = cert.Key
		}
		for _, p := range pinned {
			if bytes.Equal(p.Marshal(), key.Marshal()) {
				return nil
			}
		}
		return fmt.Errorf("ssh target %s (%s): %w: %s %s", target.Name, hostname, ErrUnknownHostKey,
			key.Type(), ssh.FingerprintSHA256(key))
	}
}

func parseHostTrust(c config.TargetSSH) (pinned []ssh.PublicKey, ca ssh.PublicKey, err error) {
	lines, err := config.ResolveLines(c.HostKeys)
	if err != nil {
		return nil, nil, err
	}
	for i, line := range lines {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return nil, nil, fmt.Errorf("host_keys[%d]: %w", i, err)
		}
		pinned = append(pinned, k)
	}
	if c.HostCA != "" {
		caLines, err := config.ResolveLines([]string{c.HostCA})
		if err != nil {
			return nil, nil, err
		}
		if len(caLines) != 1 {
			return nil, nil, fmt.Errorf("host_ca: want one key, got %d", len(caLines))
		}
		if ca, _, _, _, err = ssh.ParseAuthorizedKey([]byte(caLines[0])); err != nil {
			return nil, nil, fmt.Errorf("host_ca: %w", err)
		}
	}
	if len(pinned) == 0 && ca == nil {
		return nil, nil, errors.New("neither host_keys nor host_ca is set")
	}
	return pinned, ca, nil
}

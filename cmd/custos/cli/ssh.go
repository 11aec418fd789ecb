package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// sshCert is the API's answer to POST /api/v1/ssh/certificate: the
// certificate, and where the SSH proxy is with the host key it presents.
type sshCert struct {
	Certificate string    `json:"certificate"`
	ValidBefore time.Time `json:"valid_before"`
	SSHHost     string    `json:"ssh_host"`
	SSHPort     string    `json:"ssh_port"`
	HostKey     string    `json:"host_key"`
}

// sshIdentity is a private key and the certificate file next to it.
type sshIdentity struct {
	Key, Cert string
}

// custosKey returns the CLI's own SSH key, in the config directory,
// creating it on first use: the certificate custos gets for it never
// lands next to a key of the user's under ~/.ssh.
func custosKey() (string, error) {
	dir, err := configDir()
	if err != nil {
		return "", err
	}
	key := filepath.Join(dir, "ssh", "id_ed25519")
	if _, err := os.Stat(key); err == nil {
		return key, nil
	}
	if err := os.MkdirAll(filepath.Dir(key), 0o700); err != nil {
		return "", fmt.Errorf("ssh key: %w", err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("ssh key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "custos")
	if err != nil {
		return "", fmt.Errorf("ssh key: %w", err)
	}
	spub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("ssh key: %w", err)
	}
	if err := os.WriteFile(key+".pub", ssh.MarshalAuthorizedKey(spub), 0o644); err != nil {
		return "", fmt.Errorf("ssh key: %w", err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(block), 0o600); err != nil {
		return "", fmt.Errorf("ssh key: %w", err)
	}
	return key, nil
}

// certify has the broker certify KEY.pub (KEY is custos's own key when
// empty) and writes KEY-cert.pub. An existing KEY-cert.pub is replaced
// only when this broker's CA signed it too (a refresh) or with force:
// a certificate from elsewhere next to a key of the user's is not
// silently lost.
func (g *globals) certify(ctx context.Context, key string, force bool) (sshIdentity, sshCert, error) {
	var out sshCert
	if key == "" {
		k, err := custosKey()
		if err != nil {
			return sshIdentity{}, out, err
		}
		key = k
	}
	id := sshIdentity{Key: key, Cert: key + "-cert.pub"}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		return id, out, fmt.Errorf("read public key: %w (create one with ssh-keygen -t ed25519)", err)
	}
	if err := g.call(ctx, "POST", "/api/v1/ssh/certificate", map[string]string{"public_key": string(pub)}, &out); err != nil {
		return id, out, err
	}
	if !force {
		if err := sameCA(id.Cert, out.Certificate); err != nil {
			return id, out, err
		}
	}
	if err := os.WriteFile(id.Cert, []byte(out.Certificate+"\n"), 0o644); err != nil {
		return id, out, err
	}
	return id, out, nil
}

// sameCA refuses to replace file unless it is missing or holds a
// certificate signed by the same CA as cert.
func sameCA(file, cert string) error {
	old, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	refuse := fmt.Errorf("%s exists and was not issued by this broker; not overwriting it without --force "+
		"(or leave out --ssh-key: custos then uses its own key)", file)
	ok, _, _, _, err := ssh.ParseAuthorizedKey(old)
	if err != nil {
		return refuse
	}
	nk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(cert))
	if err != nil {
		return fmt.Errorf("broker certificate: %w", err)
	}
	oc, isCert := ok.(*ssh.Certificate)
	nc, _ := nk.(*ssh.Certificate)
	if !isCert || nc == nil || !bytes.Equal(oc.SignatureKey.Marshal(), nc.SignatureKey.Marshal()) {
		return refuse
	}
	return nil
}

// hostKeyAlias names the broker's SSH proxy in known_hosts.
func (c sshCert) hostKeyAlias() string { return "custos-" + c.SSHHost + "-" + c.SSHPort }

// knownHosts writes the proxy's host key under its alias into the CLI's
// own known_hosts file, keeping other brokers' lines, and returns the
// file's name.
func (c sshCert) knownHosts() (string, error) {
	if c.SSHPort == "" || c.HostKey == "" {
		return "", errors.New("this broker runs no SSH proxy (listen.ssh is not set)")
	}
	dir, err := configDir()
	if err != nil {
		return "", err
	}
	file := filepath.Join(dir, "ssh", "known_hosts")
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return "", err
	}
	alias := c.hostKeyAlias()
	var keep []string
	if old, err := os.ReadFile(file); err == nil {
		for _, line := range strings.Split(strings.TrimSpace(string(old)), "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] != alias {
				keep = append(keep, line)
			}
		}
	}
	keep = append(keep, alias+" "+c.HostKey)
	if err := os.WriteFile(file, []byte(strings.Join(keep, "\n")+"\n"), 0o600); err != nil {
		return "", err
	}
	return file, nil
}

// sshOptions are the ssh_config options that reach target through the
// broker with id; knownHosts is the CLI's known_hosts file.
func (c sshCert) sshOptions(id sshIdentity, target, knownHosts string) [][2]string {
	return [][2]string{
		{"HostName", c.SSHHost},
		{"Port", c.SSHPort},
		{"User", target},
		{"IdentityFile", id.Key},
		{"CertificateFile", id.Cert},
		{"IdentitiesOnly", "yes"},
		{"HostKeyAlias", c.hostKeyAlias()},
		{"UserKnownHostsFile", knownHosts},
		{"StrictHostKeyChecking", "yes"},
	}
}

// sshQuote quotes an ssh_config value that holds spaces.
func sshQuote(v string) string {
	if strings.ContainsAny(v, " \t") {
		return `"` + v + `"`
	}
	return v
}

package devstack

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"
)

// tlsPaths are the PEM files of a development certificate authority and a
// server certificate it signed for localhost, 127.0.0.1 and ::1.
type tlsPaths struct {
	CACert, CAKey         string
	ServerCert, ServerKey string
}

// tlsFiles names the files under dir.
func tlsFiles(dir string) tlsPaths {
	return tlsPaths{
		CACert:     filepath.Join(dir, "ca.crt"),
		CAKey:      filepath.Join(dir, "ca.key"),
		ServerCert: filepath.Join(dir, "server.crt"),
		ServerKey:  filepath.Join(dir, "server.key"),
	}
}

// ensureDevTLS writes a CA and a loopback server certificate into dir,
// keeping existing ones that are valid for at least another week.
func ensureDevTLS(dir string) (tlsPaths, error) {
	f := tlsFiles(dir)
	if certValid(f.CACert) && certValid(f.ServerCert) && exists(f.CAKey) && exists(f.ServerKey) {
		return f, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return f, fmt.Errorf("dev tls: %w", err)
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, fmt.Errorf("dev tls: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "Custos development CA", Organization: []string{"Custos dev"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(5, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return f, fmt.Errorf("dev tls: ca: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return f, fmt.Errorf("dev tls: ca: %w", err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, fmt.Errorf("dev tls: %w", err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: "localhost", Organization: []string{"Custos dev"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return f, fmt.Errorf("dev tls: server: %w", err)
	}
	caKeyDER, err := x509.MarshalPKCS8PrivateKey(caKey)
	if err != nil {
		return f, fmt.Errorf("dev tls: %w", err)
	}
	srvKeyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		return f, fmt.Errorf("dev tls: %w", err)
	}
	for _, w := range []struct {
		path, typ string
		der       []byte
		mode      os.FileMode
	}{
		{f.CAKey, "PRIVATE KEY", caKeyDER, 0o600},
		{f.ServerKey, "PRIVATE KEY", srvKeyDER, 0o600},
		{f.CACert, "CERTIFICATE", caDER, 0o644},
		{f.ServerCert, "CERTIFICATE", srvDER, 0o644},
	} {
		if err := writeFileAtomic(w.path, pem.EncodeToMemory(&pem.Block{Type: w.typ, Bytes: w.der}), w.mode); err != nil {
			return f, fmt.Errorf("dev tls: %w", err)
		}
	}
	return f, nil
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

// certValid reports whether the PEM certificate at path is valid for at
// least another week.
func certValid(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return false
	}
	c, err := x509.ParseCertificate(block.Bytes)
	return err == nil && time.Until(c.NotAfter) > 7*24*time.Hour
}

// ensureSSHKey writes an ed25519 key pair in OpenSSH format to path and
// path.pub unless both exist, and returns the public key.
func ensureSSHKey(path, comment string) (ssh.PublicKey, error) {
	if pubBytes, err := os.ReadFile(path + ".pub"); err == nil && exists(path) {
		pub, _, _, _, err := ssh.ParseAuthorizedKey(pubBytes)
		if err == nil {
			return pub, nil
		}
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ssh key %s: %w", path, err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, fmt.Errorf("ssh key %s: %w", path, err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("ssh key %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("ssh key %s: %w", path, err)
	}
	if err := writeFileAtomic(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, fmt.Errorf("ssh key %s: %w", path, err)
	}
	line := append(bytesTrimNewline(ssh.MarshalAuthorizedKey(sshPub)), []byte(" "+comment+"\n")...)
	if err := writeFileAtomic(path+".pub", line, 0o644); err != nil {
		return nil, fmt.Errorf("ssh key %s: %w", path, err)
	}
	return sshPub, nil
}

func bytesTrimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// writeFileAtomic writes data to path through a temporary file and rename.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp.Name(), mode)); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

package sshproxy

import (
	"golang.org/x/crypto/ssh"
)

// The proxy's transport algorithms, towards clients and towards targets.
// docs/ssh-proxy.md ("Crypto profile") lists what each mainstream client
// negotiates with them. Nothing here uses SHA-1, NIST curves, CBC modes or
// groups under 3072 bits towards clients, so ssh-audit reports no failure;
// strict key exchange (the Terrapin countermeasure) is always on.
var (
	// clientKeyExchanges: the hybrid post-quantum exchange OpenSSH 9.9 and
	// later prefer, then Curve25519 (OpenSSH 6.5+, paramiko 2.12, libssh2
	// 1.9+; golang.org/x/crypto adds the curve25519-sha256@libssh.org
	// alias paramiko and libssh2 name), then a 4096-bit group for clients without Curve25519.
	clientKeyExchanges = []string{
		ssh.KeyExchangeMLKEM768X25519,
		ssh.KeyExchangeCurve25519,
		ssh.KeyExchangeDH16SHA512,
	}

	// clientCiphers: AES-GCM first, then AES-CTR for clients without GCM
	// (paramiko 2.x, libssh2 before 1.11). ChaCha20-Poly1305 is left out:
	// OpenSSH clients prefer it, and Go's implementation has no assembly
	// on amd64, which would make it the proxy's bottleneck.
	clientCiphers = []string{
		ssh.CipherAES128GCM,
		ssh.CipherAES256GCM,
		ssh.CipherAES128CTR,
		ssh.CipherAES256CTR,
	}

	// clientMACs apply to AES-CTR only (GCM authenticates itself).
	// Encrypt-then-MAC first; the plain SHA-2 MACs remain for libssh2
	// before 1.11, which has no ETM modes.
	clientMACs = []string{
		ssh.HMACSHA256ETM,
		ssh.HMACSHA512ETM,
		ssh.HMACSHA256,
		ssh.HMACSHA512,
	}

	// upstreamKeyExchanges is wider than the client side, since targets
	// may run older sshd releases (NIST curves: OpenSSH 5.7+), but still
	// without SHA-1.
	upstreamKeyExchanges = []string{
		ssh.KeyExchangeMLKEM768X25519,
		ssh.KeyExchangeCurve25519,
		ssh.KeyExchangeECDHP256,
		ssh.KeyExchangeECDHP384,
		ssh.KeyExchangeECDHP521,
		ssh.KeyExchangeDH16SHA512,
		ssh.KeyExchangeDH14SHA256,
	}

	// upstreamCiphers prefers AES-GCM, which is hardware-accelerated on the
	// machines brokers run on, then ChaCha20-Poly1305 and AES-CTR.
	upstreamCiphers = []string{
		ssh.CipherAES128GCM,
		ssh.CipherAES256GCM,
		ssh.CipherChaCha20Poly1305,
		ssh.CipherAES128CTR,
		ssh.CipherAES256CTR,
	}

	// upstreamMACs: SHA-2 only.
	upstreamMACs = clientMACs
)

// clientCrypto is the transport configuration offered to clients.
func clientCrypto() ssh.Config {
	return ssh.Config{KeyExchanges: clientKeyExchanges, Ciphers: clientCiphers, MACs: clientMACs}
}

// upstreamCrypto is the transport configuration used towards targets.
func upstreamCrypto() ssh.Config {
	return ssh.Config{KeyExchanges: upstreamKeyExchanges, Ciphers: upstreamCiphers, MACs: upstreamMACs}
}

// hostKeySigner limits the broker's host key to SHA-2 signatures: an RSA
// key would otherwise also be offered as ssh-rsa (SHA-1).
func hostKeySigner(s ssh.Signer) ssh.Signer {
	if s.PublicKey().Type() != ssh.KeyAlgoRSA {
		return s
	}
	as, ok := s.(ssh.AlgorithmSigner)
	if !ok {
		return s
	}
	ms, err := ssh.NewSignerWithAlgorithms(as, []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256})
	if err != nil {
		return s
	}
	return ms
}

// logTransport logs, at debug level, what a client negotiated, for
// troubleshooting client compatibility.
func (p *Proxy) logTransport(meta ssh.ConnMetadata, sessionID string) {
	am, ok := meta.(ssh.AlgorithmsConnMetadata)
	if !ok {
		return
	}
	a := am.Algorithms()
	p.Log().Debug("ssh client transport", "session", sessionID, "client_version", string(meta.ClientVersion()),
		"kex", a.KeyExchange, "host_key", a.HostKey, "cipher", a.Write.Cipher, "mac", a.Write.MAC)
}

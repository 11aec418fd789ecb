package sshproxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"slices"
	"time"

	"golang.org/x/crypto/ssh"
)

// The cipher offer is fitted to each client. A client picks the first
// cipher in its own list that the server offers (RFC 4253 section 7.1),
// and OpenSSH lists AES-CTR before AES-GCM: offered both, it would take
// AES-CTR with HMAC-SHA2, several times the proxy's CPU per byte of
// AES-GCM. So the proxy reads the client's KEXINIT before sending its
// own, and offers only AES-GCM to a client that speaks it in both
// directions. Clients without AES-GCM (paramiko 2.x, libssh2 before
// 1.11) are offered the whole profile, AES-CTR included. Either offer is
// a subset of the audited profile in crypto.go.

const (
	// serverVersion is the proxy's identification string.
	serverVersion = "SSH-2.0-Custos"

	// kexPeekTimeout bounds the wait for the client's KEXINIT. A client
	// that waits for the server's KEXINIT first gets the whole profile
	// after this delay.
	kexPeekTimeout = 2 * time.Second

	// maxHelloBytes bounds what is read before the proxy's KEXINIT: the
	// client's identification (255 bytes, RFC 4253 section 4.2), lines a
	// client sends before it, and a KEXINIT packet (35000 bytes, section
	// 6.1).
	maxHelloBytes = 64 << 10

	msgKexInit = 20
)

// kexInitMsg is the SSH_MSG_KEXINIT payload (RFC 4253 section 7.1).
type kexInitMsg struct {
	Cookie                  [16]byte `sshtype:"20"`
	KexAlgos                []string
	ServerHostKeyAlgos      []string
	CiphersClientServer     []string
	CiphersServerClient     []string
	MACsClientServer        []string
	MACsServerClient        []string
	CompressionClientServer []string
	CompressionServerClient []string
	LanguagesClientServer   []string
	LanguagesServerClient   []string
	FirstKexFollows         bool
	Reserved                uint32
}

var (
	errNeedMore   = errors.New("incomplete")
	errNotKexInit = errors.New("first packet is not a KEXINIT")
)

// parseClientHello reads the client's identification line and first
// binary packet from b, the bytes received so far. It returns errNeedMore
// while b ends before the packet does.
func parseClientHello(b []byte) (*kexInitMsg, error) {
	// Lines before the identification string are allowed (section 4.2).
	rest := b
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			return nil, errNeedMore
		}
		line := rest[:i]
		rest = rest[i+1:]
		if bytes.HasPrefix(line, []byte("SSH-")) {
			break
		}
	}
	if len(rest) < 5 {
		return nil, errNeedMore
	}
	n := binary.BigEndian.Uint32(rest)
	if n < 5 || n > maxHelloBytes {
		return nil, errNotKexInit
	}
	if uint64(len(rest)) < 4+uint64(n) {
		return nil, errNeedMore
	}
	pad := int(rest[4])
	if pad+1 > int(n) {
		return nil, errNotKexInit
	}
	payload := rest[5 : 4+int(n)-pad]
	if len(payload) == 0 || payload[0] != msgKexInit {
		return nil, errNotKexInit
	}
	var m kexInitMsg
	if err := ssh.Unmarshal(payload, &m); err != nil {
		return nil, errNotKexInit
	}
	return &m, nil
}

// fitCiphers returns the cipher offer for a client that sent m: AES-GCM
// alone when the client speaks it both ways, else the whole profile.
func fitCiphers(m *kexInitMsg) []string {
	var gcm []string
	for _, c := range clientCiphers {
		if c == ssh.CipherAES128GCM || c == ssh.CipherAES256GCM {
			gcm = append(gcm, c)
		}
	}
	if m == nil || !hasAny(m.CiphersClientServer, gcm) || !hasAny(m.CiphersServerClient, gcm) {
		return clientCiphers
	}
	return gcm
}

func hasAny(list, want []string) bool {
	for _, w := range want {
		if slices.Contains(list, w) {
			return true
		}
	}
	return false
}

// handshake returns the connection and configuration for the SSH
// handshake with a client, the cipher offer fitted to it.
func (p *Proxy) handshake(raw net.Conn, st *authState) (net.Conn, *ssh.ServerConfig) {
	cfg := p.serverConfig(st)
	return fitOffer(raw, cfg, time.Now().Add(p.LoginTimeout())), cfg
}

// fitOffer sends the proxy's identification, reads the client's
// identification and KEXINIT, and narrows cfg's ciphers to fit the
// client. It returns the connection for ssh.NewServerConn: it replays
// the bytes read and leaves out the identification string the library
// sends again. On any failure it offers the whole profile and lets the
// handshake report the error.
func fitOffer(raw net.Conn, cfg *ssh.ServerConfig, authDeadline time.Time) net.Conn {
	c := &helloConn{Conn: raw, unsent: []byte(serverVersion + "\r\n")}
	if _, err := raw.Write(c.unsent); err != nil {
		c.unsent = nil
		return c
	}
	_ = raw.SetReadDeadline(earliest(authDeadline, time.Now().Add(kexPeekTimeout)))
	defer raw.SetReadDeadline(authDeadline)
	buf := make([]byte, 0, 4<<10)
	for len(buf) < maxHelloBytes {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, len(buf))
		}
		n, err := raw.Read(buf[len(buf):min(cap(buf), maxHelloBytes)])
		buf = buf[:len(buf)+n]
		m, perr := parseClientHello(buf)
		if perr == nil {
			cfg.Ciphers = fitCiphers(m)
			break
		}
		if perr != errNeedMore || err != nil {
			break
		}
	}
	c.replay = buf
	return c
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// helloConn replays the client bytes fitOffer read, and drops the
// identification string it already sent from the library's first write.
// The read side and the write side are each used by one goroutine at a
// time, as net.Conn allows.
type helloConn struct {
	net.Conn
	replay []byte // read from the client, not yet returned
	unsent []byte // sent already, to leave out of the next writes
}

func (c *helloConn) Read(p []byte) (int, error) {
	if len(c.replay) > 0 {
		n := copy(p, c.replay)
		c.replay = c.replay[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

var errIdentMismatch = errors.New("ssh proxy: identification string differs from the one sent")

func (c *helloConn) Write(p []byte) (int, error) {
	if len(c.unsent) == 0 {
		return c.Conn.Write(p)
	}
	k := min(len(p), len(c.unsent))
	if !bytes.Equal(p[:k], c.unsent[:k]) {
		return 0, errIdentMismatch
	}
	c.unsent = c.unsent[k:]
	if k == len(p) {
		return k, nil
	}
	n, err := c.Conn.Write(p[k:])
	return k + n, err
}

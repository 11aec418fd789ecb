package pgproxy

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
)

// Startup packet codes (the int32 after the length).
const (
	protocolV30       = 3 << 16
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	cancelRequestCode = 80877102
	// maxStartupLen is PostgreSQL's MAX_STARTUP_PACKET_LENGTH.
	maxStartupLen = 10000
	// tlsHandshakeByte starts a TLS record: a client using direct TLS
	// (sslnegotiation=direct) sends it instead of an SSLRequest.
	tlsHandshakeByte = 0x16
	// alpnPostgres is the ALPN protocol PostgreSQL clients offer.
	alpnPostgres = "postgresql"
)

// startup is what a client asked for in its StartupMessage.
type startup struct {
	// Minor is the protocol minor version the client asked for.
	Minor uint16
	// Params are the startup parameters in the order sent, without the
	// protocol options (_pq_.*), which are in Options.
	Params  []param
	Options []string
}

type param struct{ Key, Value string }

// get returns the value of a startup parameter.
func (s *startup) get(key string) string {
	for _, p := range s.Params {
		if p.Key == key {
			return p.Value
		}
	}
	return ""
}

// cancelKey is the content of a CancelRequest.
type cancelKey struct {
	PID    uint32
	Secret []byte
}

// readPacket reads one untyped startup-phase packet (int32 length, then
// body) without buffering beyond it, so no byte sent before a TLS
// handshake can be mistaken for one sent after it.
func readPacket(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	return readPacketBody(r, hdr)
}

func readPacketBody(r io.Reader, hdr [4]byte) ([]byte, error) {
	l := binary.BigEndian.Uint32(hdr[:])
	if l < 8 || l > maxStartupLen {
		return nil, fatalf(codeProtocolViolation, "invalid startup packet length %d", l)
	}
	body := make([]byte, l-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return body, nil
}

// parseStartup decodes a StartupMessage body (after the length): the
// protocol version, then NUL-terminated key/value pairs ending with a NUL.
func parseStartup(body []byte) (*startup, error) {
	if len(body) < 4 {
		return nil, fatalf(codeProtocolViolation, "invalid startup packet")
	}
	v := binary.BigEndian.Uint32(body)
	if v>>16 != 3 {
		return nil, fatalf(codeFeatureNotSupported, "unsupported frontend protocol %d.%d: server supports 3.0", v>>16, v&0xffff)
	}
	s := &startup{Minor: uint16(v & 0xffff)}
	rest := body[4:]
	for {
		if len(rest) == 0 {
			return nil, fatalf(codeProtocolViolation, "invalid startup packet layout: expected terminator as last byte")
		}
		if rest[0] == 0 {
			if len(rest) != 1 {
				return nil, fatalf(codeProtocolViolation, "invalid startup packet layout: expected terminator as last byte")
			}
			return s, nil
		}
		k, next, ok := cstring(rest)
		if !ok {
			return nil, fatalf(codeProtocolViolation, "invalid startup packet layout")
		}
		val, next2, ok := cstring(next)
		if !ok {
			return nil, fatalf(codeProtocolViolation, "invalid startup packet layout")
		}
		rest = next2
		key := string(k)
		if strings.HasPrefix(key, "_pq_.") {
			s.Options = append(s.Options, key)
			continue
		}
		if len(s.Params) >= 64 {
			return nil, fatalf(codeProtocolViolation, "too many startup parameters")
		}
		s.Params = append(s.Params, param{Key: key, Value: string(val)})
	}
}

// parseCancel decodes a CancelRequest body (after the length and code).
func parseCancel(b []byte) (cancelKey, error) {
	if len(b) < 8 || len(b) > 4+256 {
		return cancelKey{}, errors.New("invalid cancel request length")
	}
	return cancelKey{PID: binary.BigEndian.Uint32(b), Secret: bytes.Clone(b[4:])}, nil
}

// cstring splits a NUL-terminated string off b.
func cstring(b []byte) (s, rest []byte, ok bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return nil, nil, false
	}
	return b[:i], b[i+1:], true
}

// negotiated is the outcome of the startup phase.
type negotiated struct {
	conn    net.Conn
	tls     bool
	startup *startup
	cancel  *cancelKey
}

// negotiate runs the startup phase on a fresh connection: answers
// SSLRequest (TLS when configured) and GSSENCRequest (always 'N', so the
// client falls back), accepts direct TLS, and returns either the
// StartupMessage or a CancelRequest.
func negotiate(conn net.Conn, tlsConf *tls.Config) (*negotiated, error) {
	n := &negotiated{conn: conn}
	for round := 0; ; round++ {
		if round > 3 {
			return n, fatalf(codeProtocolViolation, "too many negotiation requests")
		}
		var hdr [4]byte
		if _, err := io.ReadFull(n.conn, hdr[:]); err != nil {
			return n, fmt.Errorf("read startup packet: %w", err)
		}
		if hdr[0] == tlsHandshakeByte && !n.tls && round == 0 {
			if tlsConf == nil {
				return n, errors.New("direct TLS without a certificate configured")
			}
			tc := tls.Server(&prefixConn{Conn: n.conn, prefix: hdr[:]}, tlsConf)
			if err := tc.Handshake(); err != nil {
				return n, fmt.Errorf("direct tls handshake: %w", err)
			}
			if tc.ConnectionState().NegotiatedProtocol != alpnPostgres {
				return n, errors.New("direct tls without ALPN postgresql")
			}
			n.conn, n.tls = tc, true
			continue
		}
		body, err := readPacketBody(n.conn, hdr)
		if err != nil {
			return n, fmt.Errorf("read startup packet: %w", err)
		}
		code := binary.BigEndian.Uint32(body)
		switch code {
		case sslRequestCode:
			if n.tls {
				return n, fatalf(codeProtocolViolation, "SSLRequest on an encrypted connection")
			}
			if tlsConf == nil {
				if _, err := n.conn.Write([]byte{'N'}); err != nil {
					return n, err
				}
				continue
			}
			if _, err := n.conn.Write([]byte{'S'}); err != nil {
				return n, err
			}
			tc := tls.Server(n.conn, tlsConf)
			if err := tc.Handshake(); err != nil {
				return n, fmt.Errorf("tls handshake: %w", err)
			}
			n.conn, n.tls = tc, true
		case gssEncRequestCode:
			if _, err := n.conn.Write([]byte{'N'}); err != nil {
				return n, err
			}
		case cancelRequestCode:
			k, err := parseCancel(body[4:])
			if err != nil {
				return n, err
			}
			n.cancel = &k
			return n, nil
		default:
			s, err := parseStartup(body)
			if err != nil {
				return n, err
			}
			n.startup = s
			return n, nil
		}
	}
}

// prefixConn replays bytes already read before reading from the connection.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// parseDBName splits the client's dbname into target and database:
// "TARGET" or "TARGET/database".
func parseDBName(s string) (target, database string) {
	target, database, _ = strings.Cut(s, "/")
	return target, database
}

// replicationRequested reports whether the startup asks for a replication
// connection ("replication" set to anything but a false boolean).
func replicationRequested(s *startup) bool {
	for _, p := range s.Params {
		if p.Key != "replication" {
			continue
		}
		switch strings.ToLower(p.Value) {
		case "", "false", "off", "no", "0":
			return false
		}
		return true
	}
	return false
}

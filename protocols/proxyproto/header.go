package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// Command is what a header says about the connection.
type Command int

const (
	// Proxy carries a client's connection: Source is the client.
	Proxy Command = iota
	// Local is the proxy's own connection (a health check, version 2's
	// LOCAL) or one whose addresses it does not know (version 1's
	// UNKNOWN): the connection's own addresses stand.
	Local
)

// Header is one parsed PROXY header.
type Header struct {
	// Version is 1 (text) or 2 (binary).
	Version int
	Command Command
	// Source and Destination are the client's address and the address
	// it connected to; both are invalid when Command is Local.
	Source, Destination netip.AddrPort
}

// Sizes the protocol fixes, and the bound on a version 2 header's
// address and extension block.
const (
	// maxV1 is a version 1 header's longest form, CRLF included.
	maxV1 = 107
	// v2Fixed is a version 2 header's fixed part: signature, version and
	// command, family and protocol, length.
	v2Fixed = 16
	// MaxV2Body bounds the addresses and extensions (TLVs) a version 2
	// header may carry. The protocol allows 65535 bytes; load balancers
	// send a few hundred at most.
	MaxV2Body = 2048
)

// v1Prefix and v2Sig start the two versions; both begin with 6 bytes
// that tell them apart (prefixLen).
var (
	v1Prefix = []byte("PROXY ")
	v2Sig    = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// prefixLen is how many bytes tell a header's version, or its absence.
const prefixLen = 6

// ErrNoHeader is returned when a connection does not start with a PROXY
// header.
var ErrNoHeader = errors.New("proxyproto: no PROXY protocol header")

// ErrMalformed is wrapped by every error for a header that starts as a
// PROXY header but is not a valid one.
var ErrMalformed = errors.New("proxyproto: malformed PROXY protocol header")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// IsHeaderStart reports whether b (at least 6 bytes) starts a PROXY
// header of either version.
func IsHeaderStart(b []byte) bool {
	return len(b) >= prefixLen && (bytes.Equal(b[:prefixLen], v1Prefix) || bytes.Equal(b[:prefixLen], v2Sig[:prefixLen]))
}

// Read reads one header from r, reading no byte past its end. It returns
// ErrNoHeader (with the bytes it read, which are then the start of the
// connection's own data) when r does not start with a header, and an
// error wrapping ErrMalformed for an invalid one.
func Read(r io.Reader) (Header, []byte, error) {
	start := make([]byte, prefixLen)
	if _, err := io.ReadFull(r, start); err != nil {
		return Header{}, nil, fmt.Errorf("proxyproto: read header: %w", err)
	}
	switch {
	case bytes.Equal(start, v1Prefix):
		h, err := readV1(r)
		return h, nil, err
	case bytes.Equal(start, v2Sig[:prefixLen]):
		h, err := readV2(r)
		return h, nil, err
	}
	return Header{}, start, ErrNoHeader
}

// readV1 reads the rest of a text header, one byte at a time so as not to
// read past its CRLF.
func readV1(r io.Reader) (Header, error) {
	line := make([]byte, 0, maxV1-prefixLen)
	var b [1]byte
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return Header{}, fmt.Errorf("proxyproto: read header: %w", err)
		}
		line = append(line, b[0])
		if b[0] == '\n' {
			break
		}
		if len(line) >= maxV1-prefixLen {
			return Header{}, malformed("version 1 header longer than %d bytes", maxV1)
		}
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return Header{}, malformed("version 1 header does not end in CRLF")
	}
	return parseV1(string(line[:len(line)-2]))
}

// parseV1 parses what follows "PROXY " up to the CRLF.
func parseV1(s string) (Header, error) {
	h := Header{Version: 1}
	if s == "UNKNOWN" || strings.HasPrefix(s, "UNKNOWN ") {
		h.Command = Local
		return h, nil
	}
	f := strings.Split(s, " ")
	if len(f) != 5 {
		return Header{}, malformed("version 1 header has %d fields, want 5", len(f))
	}
	var want4 bool
	switch f[0] {
	case "TCP4":
		want4 = true
	case "TCP6":
	default:
		return Header{}, malformed("version 1 protocol is neither TCP4, TCP6 nor UNKNOWN")
	}
	src, err1 := netip.ParseAddr(f[1])
	dst, err2 := netip.ParseAddr(f[2])
	if err1 != nil || err2 != nil || src.Zone() != "" || dst.Zone() != "" ||
		src.Is4() != want4 || dst.Is4() != want4 {
		return Header{}, malformed("version 1 addresses are not %s addresses", f[0])
	}
	sp, err1 := parsePort(f[3])
	dp, err2 := parsePort(f[4])
	if err1 != nil || err2 != nil {
		return Header{}, malformed("version 1 ports are not ports")
	}
	h.Source, h.Destination = netip.AddrPortFrom(src, sp), netip.AddrPortFrom(dst, dp)
	return h, nil
}

// parsePort reads a decimal port without sign or leading zeros.
func parsePort(s string) (uint16, error) {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return 0, errors.New("bad port")
	}
	n, err := strconv.ParseUint(s, 10, 16)
	return uint16(n), err
}

// Version 2 families and protocols (the 14th byte).
const (
	famUnspec = 0x0
	famInet   = 0x1
	famInet6  = 0x2
	famUnix   = 0x3
	protoTCP  = 0x1
)

// readV2 reads the rest of a binary header.
func readV2(r io.Reader) (Header, error) {
	fixed := make([]byte, v2Fixed)
	copy(fixed, v2Sig[:prefixLen])
	if _, err := io.ReadFull(r, fixed[prefixLen:]); err != nil {
		return Header{}, fmt.Errorf("proxyproto: read header: %w", unexpected(err))
	}
	if !bytes.Equal(fixed[:len(v2Sig)], v2Sig) {
		return Header{}, malformed("version 2 signature is wrong")
	}
	n := int(binary.BigEndian.Uint16(fixed[14:16]))
	if n > MaxV2Body {
		return Header{}, malformed("version 2 header carries %d bytes, over the limit of %d", n, MaxV2Body)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return Header{}, fmt.Errorf("proxyproto: read header: %w", unexpected(err))
	}
	return parseV2(fixed[12], fixed[13], body)
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// parseV2 parses a binary header's version and command, family and
// protocol, and body (addresses, then extensions, which are skipped).
func parseV2(verCmd, famProto byte, body []byte) (Header, error) {
	if verCmd>>4 != 2 {
		return Header{}, malformed("version 2 header says version %d", verCmd>>4)
	}
	h := Header{Version: 2}
	switch verCmd & 0xf {
	case 0x0:
		// LOCAL: the body is skipped whatever it holds.
		h.Command = Local
		return h, nil
	case 0x1:
		h.Command = Proxy
	default:
		return Header{}, malformed("version 2 command %#x is unknown", verCmd&0xf)
	}
	fam, proto := famProto>>4, famProto&0xf
	if proto != protoTCP {
		return Header{}, malformed("version 2 protocol %#x is not TCP", proto)
	}
	var alen int
	switch fam {
	case famInet:
		alen = 4
	case famInet6:
		alen = 16
	case famUnspec, famUnix:
		return Header{}, malformed("version 2 family %#x carries no IP address", fam)
	default:
		return Header{}, malformed("version 2 family %#x is unknown", fam)
	}
	if len(body) < 2*alen+4 {
		return Header{}, malformed("version 2 header too short for its addresses")
	}
	src, _ := netip.AddrFromSlice(body[:alen])
	dst, _ := netip.AddrFromSlice(body[alen : 2*alen])
	sp := binary.BigEndian.Uint16(body[2*alen:])
	dp := binary.BigEndian.Uint16(body[2*alen+2:])
	h.Source, h.Destination = netip.AddrPortFrom(src, sp), netip.AddrPortFrom(dst, dp)
	return h, nil
}

// AppendV2 appends h as a version 2 header (PROXY over TCP with its
// addresses, or LOCAL) to b. Both addresses of a Proxy header must be of
// one family. It is what a load balancer sends; Custos uses it in tests.
func AppendV2(b []byte, h Header) ([]byte, error) {
	b = append(b, v2Sig...)
	if h.Command == Local {
		return append(b, 0x20, 0x00, 0, 0), nil
	}
	src, dst := h.Source.Addr(), h.Destination.Addr()
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return nil, errors.New("proxyproto: header needs two addresses of one family")
	}
	fam, alen := byte(famInet6), 16
	if src.Is4() {
		fam, alen = famInet, 4
	}
	b = append(b, 0x21, fam<<4|protoTCP)
	b = binary.BigEndian.AppendUint16(b, uint16(2*alen+4))
	if alen == 4 {
		s, d := src.As4(), dst.As4()
		b = append(append(b, s[:]...), d[:]...)
	} else {
		s, d := src.As16(), dst.As16()
		b = append(append(b, s[:]...), d[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, h.Source.Port())
	return binary.BigEndian.AppendUint16(b, h.Destination.Port()), nil
}

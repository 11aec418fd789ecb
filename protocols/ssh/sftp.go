package sshproxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// SFTP version 3 packet types (draft-ietf-secsh-filexfer-02), the version
// OpenSSH speaks.
const (
	sftpInit          = 1
	sftpVersion       = 2
	sftpOpen          = 3
	sftpClose         = 4
	sftpRead          = 5
	sftpWrite         = 6
	sftpSetstat       = 9
	sftpFsetstat      = 10
	sftpRemove        = 13
	sftpMkdir         = 14
	sftpRmdir         = 15
	sftpRename        = 18
	sftpSymlink       = 20
	sftpStatus        = 101
	sftpHandle        = 102
	sftpData          = 103
	sftpExtended      = 200
	sftpExtendedReply = 201
)

// sftpMaxPacket bounds a packet's length; OpenSSH's limit is 256 KiB. A
// longer length means the stream is not SFTP (or is corrupt), and decoding
// stops.
const sftpMaxPacket = 1 << 20

// sftpKeepMax bounds how much of one packet is kept for decoding: enough
// for two 4 KiB paths and attributes. The rest (file data, directory
// listings) is counted and skipped, never copied.
const sftpKeepMax = 16 << 10

// errSFTPDesync reports a stream that stopped looking like SFTP.
var errSFTPDesync = errors.New("sftp: stream out of sync")

// sftpKeep returns how many body bytes of a packet of type typ the decoder
// needs: the fixed header for data-carrying packets, everything (up to
// sftpKeepMax) for path-carrying ones, and nothing for the rest.
func sftpKeep(typ byte) int {
	switch typ {
	case sftpWrite, sftpRead:
		// id, handle (at most 256 bytes), offset, length
		return 4 + 4 + 256 + 8 + 4
	case sftpData:
		// id, data length
		return 8
	case sftpClose, sftpHandle:
		return 4 + 4 + 256
	case sftpOpen, sftpSetstat, sftpFsetstat, sftpRemove, sftpMkdir, sftpRmdir, sftpRename, sftpSymlink,
		sftpExtended, sftpStatus, sftpInit, sftpVersion:
		return sftpKeepMax
	}
	return 0
}

// sftpFramer splits one direction of an SFTP byte stream into packets,
// whatever the read boundaries. For each packet it calls onPacket once with
// the type, the kept prefix of the body (see sftpKeep) and the body's full
// length. It allocates only while its keep buffer first grows.
type sftpFramer struct {
	onPacket func(typ byte, body []byte, full int) error

	head    [5]byte
	headN   int
	typ     byte
	full    int
	keep    int
	body    []byte
	skip    int
	emitted bool
	broken  bool
}

// feed decodes p. After a desync it returns errSFTPDesync once and ignores
// the rest of the stream; an error from onPacket is returned as is.
func (f *sftpFramer) feed(p []byte) error {
	for !f.broken {
		if f.headN < len(f.head) {
			if len(p) == 0 {
				return nil
			}
			n := copy(f.head[f.headN:], p)
			f.headN += n
			p = p[n:]
			if f.headN < len(f.head) {
				return nil
			}
			l := binary.BigEndian.Uint32(f.head[:4])
			if l < 1 || l > sftpMaxPacket {
				f.broken = true
				return errSFTPDesync
			}
			f.typ = f.head[4]
			f.full = int(l) - 1
			f.keep = min(f.full, sftpKeep(f.typ))
			f.skip = f.full - f.keep
			f.body = f.body[:0]
			f.emitted = false
		}
		if len(f.body) < f.keep {
			n := min(f.keep-len(f.body), len(p))
			f.body = append(f.body, p[:n]...)
			p = p[n:]
			if len(f.body) < f.keep {
				return nil
			}
		}
		if !f.emitted {
			f.emitted = true
			if f.onPacket != nil {
				if err := f.onPacket(f.typ, f.body, f.full); err != nil {
					return err
				}
			}
		}
		if f.skip > 0 {
			n := min(f.skip, len(p))
			f.skip -= n
			p = p[n:]
			if f.skip > 0 {
				return nil
			}
		}
		f.headN = 0
	}
	return nil
}

// sftpReader reads SFTP fields from a packet body. A short body sets bad
// and yields zero values; strings alias the body.
type sftpReader struct {
	b   []byte
	bad bool
}

func (r *sftpReader) u32() uint32 {
	if len(r.b) < 4 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *sftpReader) u64() uint64 {
	if len(r.b) < 8 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *sftpReader) bytes() []byte {
	n := r.u32()
	if r.bad || uint64(n) > uint64(len(r.b)) {
		r.bad = true
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *sftpReader) str() string { return string(r.bytes()) }

// SFTP attribute flags.
const (
	attrSize        = 0x1
	attrUIDGID      = 0x2
	attrPermissions = 0x4
	attrACModTime   = 0x8
	attrExtended    = 0x80000000
)

// attrs reads an ATTRS structure and describes what it sets, e.g.
// ["size=0", "mode=0644"].
func (r *sftpReader) attrs() []string {
	flags := r.u32()
	var out []string
	if flags&attrSize != 0 {
		out = append(out, fmt.Sprintf("size=%d", r.u64()))
	}
	if flags&attrUIDGID != 0 {
		uid, gid := r.u32(), r.u32()
		out = append(out, fmt.Sprintf("uid=%d", uid), fmt.Sprintf("gid=%d", gid))
	}
	if flags&attrPermissions != 0 {
		out = append(out, fmt.Sprintf("mode=%04o", r.u32()&0o7777))
	}
	if flags&attrACModTime != 0 {
		at, mt := r.u32(), r.u32()
		out = append(out, fmt.Sprintf("atime=%d", at), fmt.Sprintf("mtime=%d", mt))
	}
	if flags&attrExtended != 0 {
		n := r.u32()
		for i := uint32(0); i < n && !r.bad; i++ {
			k := r.bytes()
			r.bytes()
			out = append(out, "ext="+string(k))
		}
	}
	if r.bad {
		return nil
	}
	return out
}

// Open flags.
const (
	openRead   = 0x1
	openWrite  = 0x2
	openAppend = 0x4
	openCreate = 0x8
	openTrunc  = 0x10
	openExcl   = 0x20
)

// openMode describes SFTP open flags, e.g. "write,create,truncate".
func openMode(flags uint32) string {
	var parts []string
	for _, f := range []struct {
		bit  uint32
		name string
	}{{openRead, "read"}, {openWrite, "write"}, {openAppend, "append"}, {openCreate, "create"}, {openTrunc, "truncate"}, {openExcl, "exclusive"}} {
		if flags&f.bit != 0 {
			parts = append(parts, f.name)
		}
	}
	return strings.Join(parts, ",")
}

// SFTP status codes.
var sftpStatusNames = [...]string{"ok", "eof", "no such file", "permission denied", "failure", "bad message",
	"no connection", "connection lost", "operation unsupported"}

// sftpOutcome describes a STATUS reply: "ok", or "error: <code>: <message>".
func sftpOutcome(code uint32, msg string) string {
	if code == 0 {
		return "ok"
	}
	name := fmt.Sprintf("status %d", code)
	if int(code) < len(sftpStatusNames) {
		name = sftpStatusNames[code]
	}
	if msg == "" || strings.EqualFold(msg, name) {
		return "error: " + name
	}
	return "error: " + name + ": " + msg
}

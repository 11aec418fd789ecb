package sshproxy

import (
	"encoding/binary"
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
	sftpAttrs         = 105
	sftpExtended      = 200
	sftpExtendedReply = 201
)

// sftpMaxPacket bounds a packet's length; OpenSSH's limit is 256 KiB. A
// longer length means the stream is not SFTP (or is corrupt): it breaks.
const sftpMaxPacket = 1 << 20

// sftpKeepMax bounds how much of one packet is kept for decoding: enough
// for two 4 KiB paths and attributes. The rest (file data, directory
// listings) is counted and skipped, never copied.
const sftpKeepMax = 16 << 10

// sftpKeep returns how many body bytes of a packet of type typ the decoder
// needs: the fixed header for data-carrying packets (for WRITE, the id and
// the handle's length; the framer then extends it to the whole header),
// everything (up to sftpKeepMax) for path-carrying ones, and nothing for
// the rest.
func sftpKeep(typ byte) int {
	switch typ {
	case sftpWrite:
		// id, handle length
		return 4 + 4
	case sftpRead:
		// id, handle (at most 256 bytes), offset, length
		return 4 + 4 + sftpMaxHandle + 8 + 4
	case sftpData:
		// id, data length
		return 8
	case sftpClose, sftpHandle:
		return 4 + 4 + sftpMaxHandle
	case sftpOpen, sftpSetstat, sftpFsetstat, sftpRemove, sftpMkdir, sftpRmdir, sftpRename, sftpSymlink,
		sftpExtended, sftpStatus, sftpInit, sftpVersion:
		return sftpKeepMax
	}
	return 0
}

// sftpMaxHandle bounds a handle's length (draft-ietf-secsh-filexfer-02).
const sftpMaxHandle = 256

// sftpFromClient and sftpFromTarget report whether a packet type may come
// from that side: requests from the client, replies from the target.
func sftpFromClient(typ byte) bool {
	return typ == sftpInit || typ >= sftpOpen && typ <= sftpSymlink || typ == sftpExtended
}

func sftpFromTarget(typ byte) bool {
	return typ == sftpVersion || typ >= sftpStatus && typ <= sftpAttrs || typ == sftpExtendedReply
}

// sftpFramer splits one direction of an SFTP byte stream into packets,
// whatever the read boundaries, and breaks (for good) at the first packet
// that is not SFTP: a length out of range, a type this side does not send,
// a first packet other than INIT or VERSION, or a body onPacket rejects.
// It allocates only while its buffers first grow.
type sftpFramer struct {
	// valid reports whether this side sends a packet type; first is the
	// type its first packet must have.
	valid func(typ byte) bool
	first byte
	// onPacket is called once per packet with the type, the kept prefix
	// of the body (see sftpKeep) and the body's full length. It reports
	// whether the rest of the body is file contents, and ok false for a
	// malformed packet.
	onPacket func(typ byte, body []byte, full int) (contents, ok bool, err error)
	// onContents sees file contents, in order.
	onContents func(p []byte)

	head     [5]byte
	headN    int
	typ      byte
	full     int
	keep     int
	keepSet  bool
	body     []byte
	skip     int
	emitted  bool
	contents bool
	started  bool
	broken   bool
	spans    []span
}

// feed decodes p and says how much of it was SFTP and which ranges were
// file contents. An error from onPacket is returned as is.
func (f *sftpFramer) feed(p []byte) (parsed, error) {
	f.spans = f.spans[:0]
	i := 0
	for !f.broken {
		if f.headN < len(f.head) {
			if i == len(p) {
				return parsed{n: len(p), content: f.spans}, nil
			}
			n := copy(f.head[f.headN:], p[i:])
			f.headN += n
			i += n
			if f.headN < len(f.head) {
				continue
			}
			l := binary.BigEndian.Uint32(f.head[:4])
			f.typ = f.head[4]
			// Every packet carries at least a 4-byte id or version.
			if l < 5 || l > sftpMaxPacket || !f.valid(f.typ) || !f.started && f.typ != f.first {
				f.broken = true
				break
			}
			f.started = true
			f.full = int(l) - 1
			f.keep = min(f.full, sftpKeep(f.typ))
			f.keepSet = f.typ != sftpWrite
			f.body = f.body[:0]
			f.emitted, f.contents = false, false
		}
		if len(f.body) < f.keep {
			n := min(f.keep-len(f.body), len(p)-i)
			f.body = append(f.body, p[i:i+n]...)
			i += n
			if len(f.body) < f.keep {
				return parsed{n: len(p), content: f.spans}, nil
			}
		}
		if !f.keepSet {
			// WRITE: id, handle, offset, length, then the data.
			f.keepSet = true
			if len(f.body) < 8 {
				f.broken = true
				break
			}
			hl := int(binary.BigEndian.Uint32(f.body[4:8]))
			if hl > sftpMaxHandle || 8+hl+12 > f.full {
				f.broken = true
				break
			}
			f.keep = 8 + hl + 12
			continue
		}
		if !f.emitted {
			f.emitted = true
			f.skip = f.full - len(f.body)
			if f.onPacket != nil {
				contents, ok, err := f.onPacket(f.typ, f.body, f.full)
				if err != nil {
					return parsed{n: i, content: f.spans}, err
				}
				if !ok {
					f.broken = true
					break
				}
				f.contents = contents
			}
		}
		if f.skip > 0 {
			n := min(f.skip, len(p)-i)
			if f.contents && n > 0 {
				f.spans = append(f.spans, span{i, n})
				if f.onContents != nil {
					f.onContents(p[i : i+n])
				}
			}
			f.skip -= n
			i += n
			if f.skip > 0 {
				return parsed{n: len(p), content: f.spans}, nil
			}
		}
		f.headN = 0
	}
	// The break is at the last byte examined: the type byte of a bad
	// header, or the last kept byte of a bad body. It is in p, and where
	// reads are cut does not move it.
	return parsed{n: max(i-1, 0), content: f.spans}, nil
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

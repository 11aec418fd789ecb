package sshproxy

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"sync"

	"github.com/custos-pam/custos/recorder/event"
)

// Bounds on what one SFTP channel may make the observer remember.
const (
	sftpMaxPending = 1 << 16
	sftpMaxFiles   = 1 << 12
)

// sftpPending is a request awaiting its reply.
type sftpPending struct {
	op     string
	path   string
	path2  string
	handle string
	args   []string
	flags  uint32
	file   *sftpFile
	n      int64
}

// sftpFile is an open handle and what moved through it. Under the digest
// policy it hashes the data of its WRITE requests and DATA replies, each
// in the order the packets passed.
type sftpFile struct {
	path    string
	read    int64
	written int64
	failure string

	sumMu      sync.Mutex
	wsum, rsum hash.Hash
}

// hashWrite and hashRead add file data to the digests.
func (f *sftpFile) hashWrite(p []byte) {
	f.sumMu.Lock()
	if f.wsum != nil {
		f.wsum.Write(p)
	}
	f.sumMu.Unlock()
}

func (f *sftpFile) hashRead(p []byte) {
	f.sumMu.Lock()
	if f.rsum != nil {
		f.rsum.Write(p)
	}
	f.sumMu.Unlock()
}

// sums returns the hex digests of the data written and read.
func (f *sftpFile) sums() (w, r string) {
	f.sumMu.Lock()
	defer f.sumMu.Unlock()
	if f.wsum != nil {
		w = hex.EncodeToString(f.wsum.Sum(nil))
	}
	if f.rsum != nil {
		r = hex.EncodeToString(f.rsum.Sum(nil))
	}
	return w, r
}

// sftpObserver turns an SFTP session into file events: open (path, mode,
// outcome), the bytes read and written per file when it closes (with their
// SHA-256 under the digest policy), and remove, rename, mkdir, rmdir,
// setstat, symlink and link with their outcomes. Requests are matched to
// replies by id; file data is counted (and hashed), never copied. The data
// of a WRITE to an open handle and of a DATA reply to a READ of one are
// file contents; every other byte is protocol.
type sftpObserver struct {
	rec    eventSink
	ch     uint32
	digest bool

	fromClientF sftpFramer
	fromTargetF sftpFramer
	// writing and reading are the files whose contents the client's and
	// the target's framer pass; each is used by that framer only.
	writing, reading *sftpFile

	mu      sync.Mutex
	pending map[uint32]sftpPending
	files   map[string]*sftpFile
}

func newSFTPObserver(rec eventSink, ch uint32, digest bool) *sftpObserver {
	o := &sftpObserver{rec: rec, ch: ch, digest: digest, pending: map[uint32]sftpPending{}, files: map[string]*sftpFile{}}
	o.fromClientF = sftpFramer{valid: sftpFromClient, first: sftpInit, onPacket: o.clientPacket,
		onContents: func(p []byte) { o.writing.hashWrite(p) }}
	o.fromTargetF = sftpFramer{valid: sftpFromTarget, first: sftpVersion, onPacket: o.targetPacket,
		onContents: func(p []byte) { o.reading.hashRead(p) }}
	return o
}

func (o *sftpObserver) fromClient(p []byte) (parsed, error) { return o.fromClientF.feed(p) }
func (o *sftpObserver) fromTarget(p []byte) (parsed, error) { return o.fromTargetF.feed(p) }

// clientPacket registers a request whose outcome will be recorded.
func (o *sftpObserver) clientPacket(typ byte, body []byte, full int) (contents, ok bool, err error) {
	r := sftpReader{b: body}
	id := r.u32()
	var p sftpPending
	switch typ {
	case sftpOpen:
		p.op, p.path = "open", r.str()
		p.flags = r.u32()
		p.args = append([]string{openMode(p.flags)}, r.attrs()...)
	case sftpClose:
		p.op, p.handle = "close", r.str()
	case sftpRead, sftpWrite:
		h := r.bytes()
		r.u64()
		n := r.u32()
		if r.bad || len(r.b) != 0 && typ == sftpWrite || typ == sftpWrite && int(n) != full-len(body) {
			// A WRITE's header is kept whole: its data length must
			// be what the packet holds.
			return false, false, nil
		}
		o.mu.Lock()
		f := o.files[string(h)]
		if f != nil && len(o.pending) < sftpMaxPending {
			op := "read"
			if typ == sftpWrite {
				op = "write"
			}
			o.pending[id] = sftpPending{op: op, file: f, n: int64(n)}
		}
		o.mu.Unlock()
		if typ == sftpWrite && f != nil {
			o.writing = f
			return true, true, nil
		}
		return false, true, nil
	case sftpSetstat:
		p.op, p.path = "setstat", r.str()
		p.args = r.attrs()
	case sftpFsetstat:
		p.op = "setstat"
		h := r.bytes()
		p.args = r.attrs()
		o.mu.Lock()
		if f := o.files[string(h)]; f != nil {
			p.path = f.path
		}
		o.mu.Unlock()
	case sftpRemove:
		p.op, p.path = "remove", r.str()
	case sftpMkdir:
		p.op, p.path = "mkdir", r.str()
		p.args = r.attrs()
	case sftpRmdir:
		p.op, p.path = "rmdir", r.str()
	case sftpRename:
		p.op, p.path, p.path2 = "rename", r.str(), r.str()
	case sftpSymlink:
		// OpenSSH sends (target, link), the reverse of the draft.
		p.op, p.path2, p.path = "symlink", r.str(), r.str()
	case sftpExtended:
		switch r.str() {
		case "posix-rename@openssh.com":
			p.op, p.path, p.path2 = "rename", r.str(), r.str()
		case "hardlink@openssh.com":
			p.op, p.path2, p.path = "link", r.str(), r.str()
		default:
			return false, true, nil
		}
	default:
		return false, true, nil
	}
	if r.bad {
		p.args = append(p.args, "truncated")
	}
	o.mu.Lock()
	if len(o.pending) < sftpMaxPending {
		o.pending[id] = p
	}
	o.mu.Unlock()
	return false, true, nil
}

// targetPacket matches a reply to its request and records the outcome.
func (o *sftpObserver) targetPacket(typ byte, body []byte, full int) (contents, ok bool, err error) {
	r := sftpReader{b: body}
	id := r.u32()
	if typ == sftpData && (len(body) != 8 || int(binary.BigEndian.Uint32(body[4:])) != full-8) {
		// DATA holds exactly its data.
		return false, false, nil
	}
	o.mu.Lock()
	p, ok := o.pending[id]
	if ok && (typ == sftpStatus || typ == sftpHandle || typ == sftpData || typ == sftpExtendedReply) {
		delete(o.pending, id)
	} else {
		ok = false
	}
	o.mu.Unlock()
	if !ok {
		return false, true, nil
	}
	switch typ {
	case sftpData:
		if p.op != "read" {
			return false, true, nil
		}
		n := r.u32()
		o.mu.Lock()
		p.file.read += int64(n)
		o.mu.Unlock()
		o.reading = p.file
		return true, true, nil
	case sftpHandle:
		if p.op != "open" {
			return false, true, nil
		}
		h := r.str()
		f := &sftpFile{path: p.path}
		if o.digest {
			f.wsum, f.rsum = sha256.New(), sha256.New()
		}
		o.mu.Lock()
		if len(o.files) < sftpMaxFiles {
			o.files[h] = f
		}
		o.mu.Unlock()
		return false, true, o.fileEvent(p.op, p.path, "", p.args, 0, "ok")
	case sftpStatus:
		code := r.u32()
		msg := r.str()
		outcome := sftpOutcome(code, msg)
		switch p.op {
		case "read":
			if code != 0 && code != 1 {
				o.mu.Lock()
				p.file.failure = outcome
				o.mu.Unlock()
			}
			return false, true, nil
		case "write":
			o.mu.Lock()
			if code == 0 {
				p.file.written += p.n
			} else {
				p.file.failure = outcome
			}
			o.mu.Unlock()
			return false, true, nil
		case "close":
			o.mu.Lock()
			f := o.files[p.handle]
			delete(o.files, p.handle)
			o.mu.Unlock()
			if f == nil {
				return false, true, nil
			}
			return false, true, o.closeEvents(f, outcome)
		}
		return false, true, o.fileEvent(p.op, p.path, p.path2, p.args, 0, outcome)
	}
	// An extended reply answers an extension we do not itemize.
	return false, true, nil
}

// closeEvents records what moved through a file when it closed.
func (o *sftpObserver) closeEvents(f *sftpFile, outcome string) error {
	o.mu.Lock()
	read, written, failure := f.read, f.written, f.failure
	o.mu.Unlock()
	if failure != "" && outcome == "ok" {
		outcome = failure
	}
	if read == 0 && written == 0 {
		return o.fileEvent("close", f.path, "", nil, 0, outcome)
	}
	wsum, rsum := f.sums()
	if read > 0 {
		if err := o.fileEvent("read", f.path, "", digestArgs(rsum), read, outcome); err != nil {
			return err
		}
	}
	if written > 0 {
		return o.fileEvent("write", f.path, "", digestArgs(wsum), written, outcome)
	}
	return nil
}

// digestArgs is the file event argument carrying a hex SHA-256, if any.
func digestArgs(sum string) []string {
	if sum == "" {
		return nil
	}
	return []string{"sha256=" + sum}
}

func (o *sftpObserver) fileEvent(op, path, path2 string, args []string, n int64, outcome string) error {
	if path2 != "" {
		args = append([]string{path2}, args...)
	}
	return o.rec.Record(event.Event{Kind: event.KindFile, Channel: o.ch, Op: op, Text: path, Args: args, N: n, Name: outcome})
}

// close records files still open when the channel ended.
func (o *sftpObserver) close() error {
	o.mu.Lock()
	open := make([]*sftpFile, 0, len(o.files))
	for h, f := range o.files {
		open = append(open, f)
		delete(o.files, h)
	}
	o.mu.Unlock()
	var first error
	for _, f := range open {
		if err := o.closeEvents(f, "incomplete: channel closed with the file open"); err != nil && first == nil {
			first = err
		}
	}
	return first
}

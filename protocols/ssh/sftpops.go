package sshproxy

import (
	"errors"
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

// sftpFile is an open handle and what moved through it.
type sftpFile struct {
	path    string
	read    int64
	written int64
	failure string
}

// sftpObserver turns an SFTP session into file events: open (path, mode,
// outcome), the bytes read and written per file when it closes, and
// remove, rename, mkdir, rmdir, setstat, symlink and link with their
// outcomes. Requests are matched to replies by id; file data is counted,
// never copied.
type sftpObserver struct {
	rec eventSink
	ch  uint32

	fromClientF sftpFramer
	fromTargetF sftpFramer

	mu      sync.Mutex
	pending map[uint32]sftpPending
	files   map[string]*sftpFile
	desync  bool
}

func newSFTPObserver(rec eventSink, ch uint32) *sftpObserver {
	o := &sftpObserver{rec: rec, ch: ch, pending: map[uint32]sftpPending{}, files: map[string]*sftpFile{}}
	o.fromClientF.onPacket = o.clientPacket
	o.fromTargetF.onPacket = o.targetPacket
	return o
}

func (o *sftpObserver) fromClient(p []byte) error { return o.checkDesync(o.fromClientF.feed(p)) }
func (o *sftpObserver) fromTarget(p []byte) error { return o.checkDesync(o.fromTargetF.feed(p)) }

// checkDesync notes, once, that the stream could not be decoded; the
// bytes keep flowing and are counted.
func (o *sftpObserver) checkDesync(err error) error {
	if !errors.Is(err, errSFTPDesync) {
		return err
	}
	o.mu.Lock()
	first := !o.desync
	o.desync = true
	o.mu.Unlock()
	if first {
		return o.rec.Record(event.Event{Kind: event.KindNote, Channel: o.ch, Op: "sftp", Text: "stream could not be decoded; file operations after this point are not itemized"})
	}
	return nil
}

// clientPacket registers a request whose outcome will be recorded.
func (o *sftpObserver) clientPacket(typ byte, body []byte, _ int) error {
	r := sftpReader{b: body}
	id := r.u32()
	if r.bad {
		return nil
	}
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
		o.mu.Lock()
		f := o.files[string(h)]
		if f != nil && !r.bad && len(o.pending) < sftpMaxPending {
			op := "read"
			if typ == sftpWrite {
				op = "write"
			}
			o.pending[id] = sftpPending{op: op, file: f, n: int64(n)}
		}
		o.mu.Unlock()
		return nil
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
			return nil
		}
	default:
		return nil
	}
	if r.bad {
		p.args = append(p.args, "truncated")
	}
	o.mu.Lock()
	if len(o.pending) < sftpMaxPending {
		o.pending[id] = p
	}
	o.mu.Unlock()
	return nil
}

// targetPacket matches a reply to its request and records the outcome.
func (o *sftpObserver) targetPacket(typ byte, body []byte, _ int) error {
	r := sftpReader{b: body}
	id := r.u32()
	if r.bad {
		return nil
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
		return nil
	}
	switch typ {
	case sftpData:
		if p.op == "read" {
			n := r.u32()
			o.mu.Lock()
			p.file.read += int64(n)
			o.mu.Unlock()
		}
		return nil
	case sftpHandle:
		if p.op != "open" {
			return nil
		}
		h := r.str()
		o.mu.Lock()
		if len(o.files) < sftpMaxFiles {
			o.files[h] = &sftpFile{path: p.path}
		}
		o.mu.Unlock()
		return o.fileEvent(p.op, p.path, "", p.args, 0, "ok")
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
			return nil
		case "write":
			o.mu.Lock()
			if code == 0 {
				p.file.written += p.n
			} else {
				p.file.failure = outcome
			}
			o.mu.Unlock()
			return nil
		case "close":
			o.mu.Lock()
			f := o.files[p.handle]
			delete(o.files, p.handle)
			o.mu.Unlock()
			if f == nil {
				return nil
			}
			return o.closeEvents(f, outcome)
		}
		return o.fileEvent(p.op, p.path, p.path2, p.args, 0, outcome)
	}
	// An extended reply answers an extension we do not itemize.
	return nil
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
	if read > 0 {
		if err := o.fileEvent("read", f.path, "", nil, read, outcome); err != nil {
			return err
		}
	}
	if written > 0 {
		return o.fileEvent("write", f.path, "", nil, written, outcome)
	}
	return nil
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

package sshproxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"path"
	"strconv"
	"strings"
	"sync"

	"github.com/custos-pam/custos/recorder/event"
)

// scpMaxLine bounds one scp control line (OpenSSH's own limit is 2 KiB of
// path plus the header).
const scpMaxLine = 8 << 10

// scpObserver follows the legacy scp protocol (scp -t receives, scp -f
// sends) started by an exec request, strictly: anything else breaks it.
//
// The source side sends control lines — C<mode> <size> <name>, D<mode>
// <size> <name>, E, T<mtime> 0 <atime> 0 — and, after a C line the sink
// accepted, exactly <size> bytes of contents and a status byte (0, or an
// error line). It may also send error lines (0x01 or 0x02, text, newline).
// The sink answers the start of the conversation and every control line
// and file with one status byte or error line. The protocol is lockstep:
// the source sends nothing while an answer is outstanding.
//
// It records a write (upload) or read (download) per file with its path,
// mode and size, mkdir for uploaded directories, and every error line.
// Under the full policy the file event is written at the C line; under
// digest it is written once the contents have passed, with their SHA-256.
type scpObserver struct {
	rec eventSink
	ch  uint32
	// upload is true for scp -t: the client is the source.
	upload bool
	// target is the path the command named; dirTarget is set by -d or -r,
	// when names are joined to it.
	target    string
	dirTarget bool
	digest    bool

	// mu guards everything below: both directions and close.
	mu   sync.Mutex
	dirs []string
	// sent counts source items that want an answer (the implicit start
	// of the conversation included); answered counts the answers, and
	// lastOK says whether the last one was a success.
	sent, answered int64
	lastOK         bool

	src  scpSource
	sink scpSink
}

// scpSource is the parse state of the source side.
type scpSource struct {
	scpLines
	state scpState
	kind  byte
	// afterContents is set while a status error line follows a file's
	// contents (it wants an answer).
	afterContents bool
	// file is the C entry being transferred.
	file  scpFile
	left  int64
	sum   hash.Hash
	spans []span
}

// scpLines collects one side's control lines; broken is set once the side
// stops parsing as scp.
type scpLines struct {
	line   []byte
	broken bool
}

type scpFile struct {
	op, path, mode string
	size           int64
}

type scpState uint8

const (
	scpIdle     scpState = iota // at the start of a line
	scpLine                     // in a line
	scpAwaitAck                 // after a C line, before its answer
	scpContents                 // in a file's contents
	scpStatus                   // after a file's contents
)

// scpSink is the parse state of the sink side.
type scpSink struct {
	scpLines
	inLine bool
}

// observer returns an observer for the server command.
func (srv scpServer) observer(rec eventSink, ch uint32, digest bool) *scpObserver {
	return &scpObserver{rec: rec, ch: ch, upload: srv.upload, target: srv.path, dirTarget: srv.dirTarget, digest: digest, sent: 1}
}

func (o *scpObserver) fromClient(p []byte) (parsed, error) {
	if o.upload {
		return o.feedSource(p)
	}
	return o.feedSink(p)
}

func (o *scpObserver) fromTarget(p []byte) (parsed, error) {
	if o.upload {
		return o.feedSink(p)
	}
	return o.feedSource(p)
}

// feedSource parses bytes from the side sending files.
func (o *scpObserver) feedSource(p []byte) (parsed, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := &o.src
	s.spans = s.spans[:0]
	i := 0
	for i < len(p) && !s.broken {
		switch s.state {
		case scpIdle:
			if o.answered < o.sent {
				// Lockstep: nothing may come before the answer.
				s.broken = true
				continue
			}
			switch c := p[i]; c {
			case 'C', 'D', 'E', 'T', 1, 2:
				s.kind, s.state, s.line = c, scpLine, s.line[:0]
				i++
			default:
				s.broken = true
			}
		case scpLine:
			end, complete := s.takeLine(p, i)
			if !complete {
				i = end
				continue
			}
			ok, err := o.sourceLine(s.kind, s.line)
			if err != nil {
				return parsed{n: i, content: s.spans}, err
			}
			if !ok {
				// Everything before the newline was understood as a
				// line; the line as a whole is not scp.
				i = end
				s.broken = true
				continue
			}
			i = end + 1
		case scpAwaitAck:
			if o.answered < o.sent {
				s.broken = true
				continue
			}
			if !o.lastOK {
				// The sink refused the file: no contents follow.
				s.state = scpIdle
				continue
			}
			s.state, s.left = scpContents, s.file.size
			if o.digest {
				if s.sum == nil {
					s.sum = sha256.New()
				}
				s.sum.Reset()
			}
			if s.left == 0 {
				if err := o.contentsDone(); err != nil {
					return parsed{n: i, content: s.spans}, err
				}
			}
		case scpContents:
			n := int(min(s.left, int64(len(p)-i)))
			s.spans = append(s.spans, span{i, n})
			if s.sum != nil && o.digest {
				s.sum.Write(p[i : i+n])
			}
			s.left -= int64(n)
			i += n
			if s.left == 0 {
				if err := o.contentsDone(); err != nil {
					return parsed{n: i, content: s.spans}, err
				}
			}
		case scpStatus:
			switch c := p[i]; c {
			case 0:
				o.sent++
				s.state = scpIdle
				i++
			case 1, 2:
				s.kind, s.state, s.line, s.afterContents = c, scpLine, s.line[:0], true
				i++
			default:
				s.broken = true
			}
		}
	}
	if s.broken {
		return parsed{n: i, content: s.spans}, nil
	}
	return parsed{n: len(p), content: s.spans}, nil
}

// contentsDone ends a file's contents: a status byte follows.
func (o *scpObserver) contentsDone() error {
	s := &o.src
	s.state = scpStatus
	if !o.digest {
		return nil
	}
	f := s.file
	return o.file(f.op, f.path, f.size, f.mode, "sha256="+hex.EncodeToString(s.sum.Sum(nil)))
}

// sourceLine handles a control line from the side sending files; false
// means it is not a valid scp line.
func (o *scpObserver) sourceLine(kind byte, line []byte) (bool, error) {
	s := &o.src
	s.state = scpIdle
	switch kind {
	case 1, 2:
		if s.afterContents {
			s.afterContents = false
			o.sent++
		}
		return true, o.file("error", string(line), 0, "", "")
	case 'E':
		if len(line) != 0 {
			return false, nil
		}
		if len(o.dirs) > 0 {
			o.dirs = o.dirs[:len(o.dirs)-1]
		}
		o.sent++
		return true, nil
	case 'T':
		f := strings.Split(string(line), " ")
		if len(f) != 4 {
			return false, nil
		}
		for _, n := range f {
			if !decimal(n, 20) {
				return false, nil
			}
		}
		o.sent++
		return true, nil
	}
	// C or D: <mode> <size> <name>
	f := strings.SplitN(string(line), " ", 3)
	if len(f) != 3 || !octal(f[0]) || !decimal(f[1], 19) || !scpName(f[2]) {
		return false, nil
	}
	size, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return false, nil
	}
	mode, name := "mode="+f[0], f[2]
	o.sent++
	if kind == 'D' {
		p := o.path(name)
		o.dirs = append(o.dirs, name)
		if o.upload {
			return true, o.file("mkdir", p, 0, mode, "")
		}
		return true, nil
	}
	op := "read"
	if o.upload {
		op = "write"
	}
	s.file = scpFile{op: op, path: o.path(name), mode: mode, size: size}
	s.state = scpAwaitAck
	if o.digest {
		// Recorded with the digest once the contents have passed.
		return true, nil
	}
	return true, o.file(op, s.file.path, size, mode, "")
}

// takeLine appends the bytes of p from i up to the next newline to s.line.
// It returns the index of that newline and true once the line is whole;
// otherwise where it stopped (the end of p, or past scpMaxLine with the
// stream broken) and false.
func (s *scpLines) takeLine(p []byte, i int) (int, bool) {
	j := bytes.IndexByte(p[i:], '\n')
	end := len(p)
	if j >= 0 {
		end = i + j
	}
	if len(s.line)+end-i > scpMaxLine {
		s.broken = true
		return i + scpMaxLine - len(s.line), false
	}
	s.line = append(s.line, p[i:end]...)
	return end, j >= 0
}

// feedSink parses bytes from the side receiving files: status bytes and
// error lines.
func (o *scpObserver) feedSink(p []byte) (parsed, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := &o.sink
	i := 0
	for i < len(p) && !s.broken {
		if !s.inLine {
			switch p[i] {
			case 0:
				if o.answered >= o.sent {
					// An answer nobody asked for.
					s.broken = true
					continue
				}
				o.answered++
				o.lastOK = true
			case 1, 2:
				s.inLine, s.line = true, s.line[:0]
			default:
				s.broken = true
				continue
			}
			i++
			continue
		}
		end, complete := s.takeLine(p, i)
		if !complete {
			i = end
			continue
		}
		i = end + 1
		s.inLine = false
		if o.answered < o.sent {
			o.answered++
			o.lastOK = false
		}
		if err := o.file("error", string(s.line), 0, "", ""); err != nil {
			return parsed{n: i}, err
		}
	}
	if s.broken {
		return parsed{n: i}, nil
	}
	return parsed{n: len(p)}, nil
}

// close records, under the digest policy, a file whose contents were cut
// off by the channel's end.
func (o *scpObserver) close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := &o.src
	if !o.digest || s.broken || s.state != scpContents {
		return nil
	}
	s.state = scpIdle
	f := s.file
	return o.rec.Record(event.Event{Kind: event.KindFile, Channel: o.ch, Op: f.op, Text: f.path, N: f.size - s.left,
		Args: []string{f.mode, "sha256=" + hex.EncodeToString(s.sum.Sum(nil))}, Name: "incomplete: channel closed during the file's contents"})
}

// path is where a C or D entry lands (upload) or comes from (download).
// Paths are as the command named them; the target side resolves whether
// the target is a directory, so a single upload may land inside it.
func (o *scpObserver) path(name string) string {
	if !o.upload {
		// A download's first entry is the named path itself.
		if len(o.dirs) == 0 {
			return o.target
		}
		return path.Join(append(append([]string{path.Dir(o.target)}, o.dirs...), name)...)
	}
	if len(o.dirs) == 0 && !o.dirTarget {
		return o.target
	}
	return path.Join(append(append([]string{o.target}, o.dirs...), name)...)
}

func (o *scpObserver) file(op, p string, n int64, mode, sum string) error {
	var args []string
	if mode != "" {
		args = append(args, mode)
	}
	if sum != "" {
		args = append(args, sum)
	}
	return o.rec.Record(event.Event{Kind: event.KindFile, Channel: o.ch, Op: op, Text: p, Args: args, N: n})
}

// octal reports whether s is a file mode of one to four octal digits.
func octal(s string) bool {
	if len(s) < 1 || len(s) > 4 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '7' {
			return false
		}
	}
	return true
}

// decimal reports whether s is one to max decimal digits.
func decimal(s string, max int) bool {
	if len(s) < 1 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// scpName reports whether s is an entry name an scp sink accepts: not
// empty, no slash, not . or ..
func scpName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.Contains(s, "/")
}

package sshproxy

import (
	"bytes"
	"path"
	"strconv"
	"strings"

	"github.com/custos-pam/custos/recorder/event"
)

// scpMaxLine bounds one scp control line (OpenSSH's own limit is 2 KiB of
// path plus the header).
const scpMaxLine = 8 << 10

// scpObserver follows the legacy scp protocol (scp -t receives, scp -f
// sends) started by an exec request. The source side sends control lines —
// C<mode> <size> <name>, D<mode> 0 <name>, E, T<times> — each C followed by
// the file's bytes and a status byte; the sink answers with a status byte
// (0, or 1/2 followed by an error line). It records a write (upload) or
// read (download) per file with its path, mode and size, mkdir for
// uploaded directories, and every error line.
type scpObserver struct {
	rec eventSink
	ch  uint32
	// upload is true for scp -t: the client is the source.
	upload bool
	// target is the path the command named; dirTarget is set by -d or -r,
	// when names are joined to it.
	target    string
	dirTarget bool
	dirs      []string

	src  scpStream
	sink scpStream
}

// scpStream reads control lines from one direction.
type scpStream struct {
	line   []byte
	skip   int64
	inLine bool
	broken bool
}

// newSCPObserver parses an scp server command line's arguments; it returns
// nil when they are not the legacy server mode (-t or -f).
func newSCPObserver(rec eventSink, ch uint32, args []string) *scpObserver {
	o := &scpObserver{rec: rec, ch: ch}
	mode := false
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if !strings.HasPrefix(a, "-") || len(a) < 2 {
			break
		}
		for _, f := range a[1:] {
			switch f {
			case 't':
				o.upload, mode = true, true
			case 'f':
				mode = true
			case 'r', 'd':
				o.dirTarget = true
			}
		}
	}
	if !mode {
		return nil
	}
	o.target = unquoteShell(strings.Join(args[i:], " "))
	return o
}

// unquoteShell removes one level of simple shell quoting, as the scp client
// applies to remote paths.
func unquoteShell(s string) string {
	if len(s) >= 2 && (s[0] == '\'' && s[len(s)-1] == '\'' || s[0] == '"' && s[len(s)-1] == '"') {
		return s[1 : len(s)-1]
	}
	return strings.ReplaceAll(s, `\ `, " ")
}

func (o *scpObserver) fromClient(p []byte) error {
	if o.upload {
		return o.src.feed(p, o.sourceLine)
	}
	return o.sink.feed(p, o.sinkLine)
}

func (o *scpObserver) fromTarget(p []byte) error {
	if o.upload {
		return o.sink.feed(p, o.sinkLine)
	}
	return o.src.feed(p, o.sourceLine)
}

func (o *scpObserver) close() error { return nil }

// feed splits p into control lines, skipping file contents (the size of
// the last C line) and the single status bytes between them.
func (s *scpStream) feed(p []byte, onLine func(s *scpStream, line []byte) error) error {
	for len(p) > 0 && !s.broken {
		if s.skip > 0 {
			n := int(min(s.skip, int64(len(p))))
			s.skip -= int64(n)
			p = p[n:]
			continue
		}
		if !s.inLine {
			if p[0] == 0 {
				p = p[1:]
				continue
			}
			s.inLine = true
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(s.line)+len(p) > scpMaxLine {
				s.broken = true
				return nil
			}
			s.line = append(s.line, p...)
			return nil
		}
		line := p[:i]
		if len(s.line) > 0 {
			if len(s.line)+i > scpMaxLine {
				s.broken = true
				return nil
			}
			s.line = append(s.line, line...)
			line = s.line
		}
		p = p[i+1:]
		s.inLine = false
		err := onLine(s, line)
		s.line = s.line[:0]
		if err != nil {
			return err
		}
	}
	return nil
}

// sourceLine handles a control line from the side sending files.
func (o *scpObserver) sourceLine(s *scpStream, line []byte) error {
	if len(line) == 0 {
		return nil
	}
	switch line[0] {
	case 'C', 'D':
		f := strings.SplitN(string(line[1:]), " ", 3)
		if len(f) != 3 {
			return o.note("malformed scp header")
		}
		size, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || size < 0 {
			s.broken = true
			return o.note("malformed scp size")
		}
		mode, name := "mode="+f[0], f[2]
		if line[0] == 'D' {
			p := o.path(name)
			o.dirs = append(o.dirs, name)
			if o.upload {
				return o.file("mkdir", p, mode, 0)
			}
			return nil
		}
		s.skip = size
		op := "read"
		if o.upload {
			op = "write"
		}
		return o.file(op, o.path(name), mode, size)
	case 'E':
		if len(o.dirs) > 0 {
			o.dirs = o.dirs[:len(o.dirs)-1]
		}
	case 1, 2:
		return o.file("error", string(line[1:]), "", 0)
	}
	return nil
}

// sinkLine handles an error line from the receiving side.
func (o *scpObserver) sinkLine(_ *scpStream, line []byte) error {
	if len(line) > 0 && (line[0] == 1 || line[0] == 2) {
		return o.file("error", string(line[1:]), "", 0)
	}
	return nil
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

func (o *scpObserver) file(op, p, mode string, n int64) error {
	var args []string
	if mode != "" {
		args = []string{mode}
	}
	return o.rec.Record(event.Event{Kind: event.KindFile, Channel: o.ch, Op: op, Text: p, Args: args, N: n})
}

func (o *scpObserver) note(msg string) error {
	return o.rec.Record(event.Event{Kind: event.KindNote, Channel: o.ch, Op: "scp", Text: msg})
}

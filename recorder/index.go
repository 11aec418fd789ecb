package recorder

import (
	"bytes"
	"hash/maphash"
	"strings"
	"unicode/utf8"

	"github.com/custos-pam/custos/recorder/event"
	"github.com/custos-pam/custos/recorder/sqlnorm"
)

// indexStats are a session's counters and search text for the index.
type indexStats struct {
	Bytes      int64
	Statements int64
	Events     int64
	Index      string
}

// Index limits: the index is stored unencrypted in the state store, so it
// holds only commands, SQL (normalised by default: no literal values) and
// paths, deduplicated and bounded.
const (
	maxIndexBytes = 256 << 10
	maxIndexEntry = 1 << 10
	maxLineBytes  = 2 << 10
)

// indexer derives index stats from the events of one session. Interactive
// shells are indexed by the terminal line on screen when Enter is pressed,
// (once the terminal has moved past it), so what the user saw is
// searchable and what the terminal did not echo (passwords) is not.
type indexer struct {
	bytes, statements, events int64
	text                      strings.Builder
	seen                      map[uint64]struct{}
	seed                      maphash.Seed
	pty                       map[uint32]*screenLine
	changed                   bool
	// sql is the session's event.Policy.IndexSQL.
	sql string
	// rawSeen holds the hashes of statements already indexed as sent, so
	// a repeated statement is not normalised again; nbuf is reused for
	// the normalised text.
	rawSeen map[uint64]struct{}
	nbuf    []byte
}

func newIndexer(sqlPolicy string) *indexer {
	return &indexer{seen: map[uint64]struct{}{}, seed: maphash.MakeSeed(), pty: map[uint32]*screenLine{}, sql: sqlPolicy}
}

// addSQL indexes a statement's text as the session's policy says.
func (x *indexer) addSQL(text string) {
	switch x.sql {
	case event.IndexSQLNone:
	case event.IndexSQLFull:
		x.add(text)
	default:
		if x.text.Len() >= maxIndexBytes {
			return
		}
		h := maphash.String(x.seed, text)
		if _, ok := x.rawSeen[h]; ok {
			return
		}
		if x.rawSeen == nil {
			x.rawSeen = map[uint64]struct{}{}
		}
		if len(x.rawSeen) < maxRawSeen {
			x.rawSeen[h] = struct{}{}
		}
		x.nbuf = sqlnorm.AppendNormalized(x.nbuf[:0], text)
		x.addBytes(x.nbuf)
	}
}

// maxRawSeen bounds the statements remembered as sent; past it each new
// statement is normalised and deduplicated by its normalised text alone.
const maxRawSeen = 4096

func (x *indexer) stats() indexStats {
	return indexStats{Bytes: x.bytes, Statements: x.statements, Events: x.events, Index: x.text.String()}
}

// data observes a terminal-data event.
func (x *indexer) data(k event.Kind, ch uint32, p []byte) {
	x.events++
	x.bytes += int64(len(p))
	x.changed = true
	l := x.pty[ch]
	if l == nil {
		return
	}
	if k == event.KindInput {
		if bytes.IndexByte(p, '\r') >= 0 || bytes.IndexByte(p, '\n') >= 0 {
			if l.enter {
				// Enter again before the last line was echoed.
				x.add(l.render())
				l.reset()
			}
			l.enter = true
		}
		return
	}
	if l.enter {
		// The line is complete once the terminal moves to the next one,
		// after echoing what was typed with Enter.
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.output(p)
			return
		}
		l.output(p[:i])
		x.add(l.render())
		l.reset()
		p = p[i+1:]
	}
	l.output(p)
}

// observe indexes a structured event.
func (x *indexer) observe(e *event.Event) {
	if e.Kind.Terminal() {
		x.data(e.Kind, e.Channel, e.Data)
		return
	}
	x.events++
	x.changed = true
	switch e.Kind {
	case event.KindSSHRequest:
		switch e.Op {
		case "pty-req":
			if x.pty[e.Channel] == nil && len(x.pty) < 64 {
				x.pty[e.Channel] = &screenLine{}
			}
		case "exec", "subsystem":
			x.add(e.Text)
		}
	case event.KindSSHChannel:
		if e.Text != "" {
			x.add(e.Op + " " + e.Text)
		}
	case event.KindNote:
		if e.Name == event.FlagStreamBreak {
			x.add(event.FlagStreamBreak + " " + e.Op)
		}
	case event.KindFile:
		x.add(e.Text)
		for _, a := range e.Args {
			x.add(a)
		}
	case event.KindPGQuery:
		x.statements++
		x.bytes += int64(len(e.Text))
		x.addSQL(e.Text)
	case event.KindPGParse:
		x.bytes += int64(len(e.Text))
		x.addSQL(e.Text)
	case event.KindPGExecute:
		x.statements++
	}
}

// addBytes is add for a byte slice it does not keep; it allocates only
// for an entry not indexed yet.
func (x *indexer) addBytes(b []byte) {
	b = bytes.TrimSpace(b)
	if len(b) > maxIndexEntry {
		b = b[:maxIndexEntry]
	}
	if len(b) == 0 || x.text.Len() >= maxIndexBytes {
		return
	}
	if _, ok := x.seen[maphash.Bytes(x.seed, b)]; ok {
		return
	}
	x.add(string(b))
}

// add appends one entry to the index text, once.
func (x *indexer) add(s string) {
	s = strings.TrimSpace(s)
	if s == "" || x.text.Len() >= maxIndexBytes {
		return
	}
	if len(s) > maxIndexEntry {
		s = s[:maxIndexEntry]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	h := maphash.String(x.seed, s)
	if _, ok := x.seen[h]; ok {
		return
	}
	x.seen[h] = struct{}{}
	if x.text.Len() > 0 {
		x.text.WriteByte('\n')
	}
	x.text.WriteString(s)
}

// screenLine keeps the bytes written to a terminal's current line.
type screenLine struct {
	buf []byte
	// enter is set when Enter was typed and the line is not finished yet.
	enter bool
}

func (l *screenLine) reset() { l.buf, l.enter = l.buf[:0], false }

func (l *screenLine) output(p []byte) {
	if i := bytes.LastIndexByte(p, '\n'); i >= 0 {
		l.buf = l.buf[:0]
		p = p[i+1:]
	}
	if len(p) > maxLineBytes {
		p = p[len(p)-maxLineBytes:]
	}
	if len(l.buf)+len(p) > maxLineBytes {
		l.buf = append(l.buf[:0], l.buf[len(l.buf)+len(p)-maxLineBytes:]...)
	}
	l.buf = append(l.buf, p...)
}

// render interprets the line's bytes as a terminal would for one line:
// carriage return, backspace, cursor left/right and erase-to-end, with
// other control and escape sequences dropped.
func (l *screenLine) render() string {
	var line []rune
	cur := 0
	b := l.buf
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case c == '\r':
			cur = 0
			i++
		case c == '\b':
			cur = max(cur-1, 0)
			i++
		case c == 0x1b:
			i = l.escape(b, i, &line, &cur)
		case c < 0x20 || c == 0x7f:
			i++
		default:
			r, n := utf8.DecodeRune(b[i:])
			if cur < len(line) {
				line[cur] = r
			} else {
				line = append(line, r)
			}
			cur++
			i += n
		}
	}
	return string(line)
}

// escape applies or skips the escape sequence at b[i] and returns the
// index after it.
func (l *screenLine) escape(b []byte, i int, line *[]rune, cur *int) int {
	if i+1 >= len(b) {
		return len(b)
	}
	switch b[i+1] {
	case '[': // CSI: parameters, then a final byte 0x40..0x7e
		j := i + 2
		n := 0
		for j < len(b) && b[j] >= '0' && b[j] <= '?' {
			if b[j] >= '0' && b[j] <= '9' {
				n = min(n*10+int(b[j]-'0'), 10000)
			}
			j++
		}
		if j >= len(b) {
			return len(b)
		}
		n = max(n, 1)
		switch b[j] {
		case 'C':
			*cur += n
			for len(*line) < *cur {
				*line = append(*line, ' ')
			}
		case 'D':
			*cur = max(*cur-n, 0)
		case 'K':
			if *cur < len(*line) {
				*line = (*line)[:*cur]
			}
		case 'P': // delete characters
			if *cur < len(*line) {
				end := min(*cur+n, len(*line))
				*line = append((*line)[:*cur], (*line)[end:]...)
			}
		}
		return j + 1
	case ']': // OSC: up to BEL or ST
		for j := i + 2; j < len(b); j++ {
			if b[j] == 0x07 {
				return j + 1
			}
			if b[j] == 0x1b && j+1 < len(b) && b[j+1] == '\\' {
				return j + 2
			}
		}
		return len(b)
	default:
		return i + 2
	}
}

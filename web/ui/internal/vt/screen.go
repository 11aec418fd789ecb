// Package vt is a headless terminal emulator: it applies a byte stream of
// terminal output (xterm/VT100 control sequences, UTF-8 text) to a grid of
// cells and serializes the visible state as a compact escape sequence that
// reproduces it in xterm.js. The replay player uses it to build seek
// keyframes and the live view to show late watchers the current screen.
//
// It covers what full-screen programs use (cursor motion, erase, insert and
// delete, scroll regions, SGR colours, the alternate screen, DEC line
// drawing, wide characters); it keeps no scrollback and drops combining
// marks. Nothing it produces is ever interpreted as markup: the output is
// terminal data for a terminal.
package vt

import (
	"unicode/utf8"

	"golang.org/x/text/width"
)

// Attribute flags of a cell.
const (
	Bold uint16 = 1 << iota
	Dim
	Italic
	Underline
	Blink
	Inverse
	Hidden
	Strike
)

// Color is a cell colour: 0 is the default, 1..256 a palette index plus
// one, and values with the rgbFlag bit a 24-bit colour.
type Color uint32

const rgbFlag Color = 1 << 24

// Attr is the rendition of a cell.
type Attr struct {
	FG, BG Color
	Flags  uint16
}

// Cell is one character position. A wide character occupies its cell and
// a following cell whose R is 0.
type Cell struct {
	R rune
	A Attr
}

var blank = Cell{R: ' '}

type cursor struct {
	x, y    int
	attr    Attr
	wrap    bool // a character was written to the last column
	origin  bool
	charset [2]bool // G0/G1 designate DEC line drawing
	shift   int     // 0: G0 in use, 1: G1
}

// Screen is an emulated terminal. It is not safe for concurrent use.
type Screen struct {
	cols, rows int
	main, alt  [][]Cell
	altActive  bool
	cur        cursor
	saved      [2]cursor // DECSC per screen
	top, bot   int       // scroll region, inclusive
	hidden     bool      // cursor hidden
	autowrap   bool
	tabs       []bool

	p parser
}

// The largest screen: sizes beyond are clamped, so a recorded or
// announced size of 65535x65535 cannot make the emulator allocate
// gigabytes. They match the SSH proxy's clamp of pty-req and
// window-change sizes; recordings made before that clamp are shown cut to
// this size.
const (
	MaxCols = 1000
	MaxRows = 500
)

// clampSize bounds a screen size to 1x1..MaxCols x MaxRows.
func clampSize(cols, rows int) (int, int) {
	return min(max(cols, 1), MaxCols), min(max(rows, 1), MaxRows)
}

// New returns a blank screen of the given size, clamped to at least 1x1
// and at most MaxCols x MaxRows.
func New(cols, rows int) *Screen {
	s := &Screen{}
	s.reset(clampSize(cols, rows))
	return s
}

func (s *Screen) reset(cols, rows int) {
	s.cols, s.rows = cols, rows
	s.main, s.alt = grid(cols, rows), grid(cols, rows)
	s.altActive = false
	s.cur = cursor{}
	s.saved = [2]cursor{}
	s.top, s.bot = 0, rows-1
	s.hidden = false
	s.autowrap = true
	s.tabs = make([]bool, cols)
	for i := 8; i < cols; i += 8 {
		s.tabs[i] = true
	}
	s.p = parser{}
}

func grid(cols, rows int) [][]Cell {
	g := make([][]Cell, rows)
	for i := range g {
		g[i] = blankLine(cols, Attr{})
	}
	return g
}

func blankLine(cols int, a Attr) []Cell {
	l := make([]Cell, cols)
	for i := range l {
		l[i] = Cell{R: ' ', A: Attr{BG: a.BG}}
	}
	return l
}

// Size returns the screen's columns and rows.
func (s *Screen) Size() (cols, rows int) { return s.cols, s.rows }

// Cursor returns the cursor position (0-based column and row).
func (s *Screen) Cursor() (x, y int) { return s.cur.x, s.cur.y }

// AltScreen reports whether the alternate screen is shown.
func (s *Screen) AltScreen() bool { return s.altActive }

func (s *Screen) lines() [][]Cell {
	if s.altActive {
		return s.alt
	}
	return s.main
}

// Resize changes the screen size (clamped as in New), keeping the
// top-left content. Rows that no longer fit push the top of the screen
// away, as terminals do when the cursor would fall off.
func (s *Screen) Resize(cols, rows int) {
	cols, rows = clampSize(cols, rows)
	if cols == s.cols && rows == s.rows {
		return
	}
	shift := max(s.cur.y-(rows-1), 0)
	fit := func(g [][]Cell, shift int) [][]Cell {
		out := make([][]Cell, rows)
		for y := range out {
			out[y] = blankLine(cols, Attr{})
			if src := y + shift; src < len(g) {
				copy(out[y], g[src])
				if cols < s.cols && cols > 0 && out[y][cols-1].R != 0 && isWide(out[y][cols-1].R) {
					out[y][cols-1] = blank
				}
			}
		}
		return out
	}
	s.main = fit(s.main, shift)
	s.alt = fit(s.alt, shift)
	s.cols, s.rows = cols, rows
	s.cur.y -= shift
	s.cur.x = min(s.cur.x, cols-1)
	s.cur.wrap = false
	s.top, s.bot = 0, rows-1
	tabs := make([]bool, cols)
	for i := 8; i < cols; i += 8 {
		tabs[i] = true
	}
	s.tabs = tabs
	for i := range s.saved {
		s.saved[i].x = min(s.saved[i].x, cols-1)
		s.saved[i].y = min(s.saved[i].y, rows-1)
	}
}

// Text returns the visible screen as text, one line per row with trailing
// spaces removed.
func (s *Screen) Text() string {
	var b []byte
	for y, l := range s.lines() {
		if y > 0 {
			b = append(b, '\n')
		}
		start := len(b)
		for _, c := range l {
			if c.R == 0 {
				continue
			}
			b = utf8.AppendRune(b, c.R)
		}
		end := len(b)
		for end > start && b[end-1] == ' ' {
			end--
		}
		b = b[:end]
	}
	return string(b)
}

// Line returns row y (0-based) as text without trailing spaces.
func (s *Screen) Line(y int) string {
	l := s.lines()
	if y < 0 || y >= len(l) {
		return ""
	}
	var b []byte
	for _, c := range l[y] {
		if c.R != 0 {
			b = utf8.AppendRune(b, c.R)
		}
	}
	for len(b) > 0 && b[len(b)-1] == ' ' {
		b = b[:len(b)-1]
	}
	return string(b)
}

// isWide reports whether r takes two columns.
func isWide(r rune) bool {
	if r < 0x1100 {
		return false
	}
	switch width.LookupRune(r).Kind() {
	case width.EastAsianWide, width.EastAsianFullwidth:
		return true
	}
	return false
}

// zeroWidth reports combining and other zero-width runes, which are dropped.
func zeroWidth(r rune) bool {
	if r < 0x300 {
		return false
	}
	switch {
	case r >= 0x300 && r <= 0x36f, r >= 0x1ab0 && r <= 0x1aff, r >= 0x1dc0 && r <= 0x1dff,
		r >= 0x20d0 && r <= 0x20ff, r >= 0xfe20 && r <= 0xfe2f, r == 0x200b, r == 0x200c,
		r == 0x200d, r == 0xfeff, r >= 0xfe00 && r <= 0xfe0f:
		return true
	}
	return false
}

// decGraphics maps DEC special graphics characters to Unicode.
var decGraphics = map[rune]rune{
	'`': '◆', 'a': '▒', 'f': '°', 'g': '±', 'j': '┘', 'k': '┐', 'l': '┌', 'm': '└', 'n': '┼',
	'o': '⎺', 'p': '⎻', 'q': '─', 'r': '⎼', 's': '⎽', 't': '├', 'u': '┤', 'v': '┴', 'w': '┬',
	'x': '│', 'y': '≤', 'z': '≥', '{': 'π', '|': '≠', '}': '£', '~': '·',
}

// print writes one character at the cursor.
func (s *Screen) print(r rune) {
	if s.cur.charset[s.cur.shift] && r < 0x80 {
		if g, ok := decGraphics[r]; ok {
			r = g
		}
	}
	if zeroWidth(r) {
		return
	}
	w := 1
	if isWide(r) {
		w = 2
		if s.cols < 2 {
			r, w = '?', 1
		}
	}
	if s.cur.wrap || s.cur.x+w > s.cols {
		if s.autowrap {
			s.cur.x = 0
			s.index()
		} else {
			s.cur.x = s.cols - w
		}
		s.cur.wrap = false
	}
	l := s.lines()[s.cur.y]
	s.clearWide(l, s.cur.x)
	if w == 2 {
		s.clearWide(l, s.cur.x+1)
	}
	l[s.cur.x] = Cell{R: r, A: s.cur.attr}
	if w == 2 {
		l[s.cur.x+1] = Cell{R: 0, A: s.cur.attr}
	}
	if s.cur.x+w >= s.cols {
		s.cur.x = s.cols - 1
		s.cur.wrap = true
	} else {
		s.cur.x += w
	}
}

// clearWide blanks the other half of a wide character that x overlaps.
func (s *Screen) clearWide(l []Cell, x int) {
	if x < 0 || x >= len(l) {
		return
	}
	if l[x].R == 0 && x > 0 {
		l[x-1] = Cell{R: ' ', A: l[x-1].A}
	}
	if l[x].R != 0 && isWide(l[x].R) && x+1 < len(l) {
		l[x+1] = Cell{R: ' ', A: l[x+1].A}
	}
}

// index moves the cursor down, scrolling the region at its bottom.
func (s *Screen) index() {
	switch {
	case s.cur.y == s.bot:
		s.scrollUp(s.top, s.bot, 1)
	case s.cur.y < s.rows-1:
		s.cur.y++
	}
}

// reverseIndex moves the cursor up, scrolling the region at its top.
func (s *Screen) reverseIndex() {
	switch {
	case s.cur.y == s.top:
		s.scrollDown(s.top, s.bot, 1)
	case s.cur.y > 0:
		s.cur.y--
	}
}

// scrollUp moves rows top..bot up by n, recycling the rows that leave.
func (s *Screen) scrollUp(top, bot, n int) {
	l := s.lines()
	n = min(n, bot-top+1)
	var gone [8][]Cell
	out := gone[:0]
	out = append(out, l[top:top+n]...)
	copy(l[top:bot+1], l[top+n:bot+1])
	for i, y := 0, bot-n+1; y <= bot; i, y = i+1, y+1 {
		l[y] = fillBlank(out[i], s.cur.attr)
	}
}

// scrollDown moves rows top..bot down by n, recycling the rows that leave.
func (s *Screen) scrollDown(top, bot, n int) {
	l := s.lines()
	n = min(n, bot-top+1)
	var gone [8][]Cell
	out := gone[:0]
	out = append(out, l[bot+1-n:bot+1]...)
	copy(l[top+n:bot+1], l[top:bot+1-n])
	for i, y := 0, top; y < top+n; i, y = i+1, y+1 {
		l[y] = fillBlank(out[i], s.cur.attr)
	}
}

func fillBlank(l []Cell, a Attr) []Cell {
	c := Cell{R: ' ', A: Attr{BG: a.BG}}
	for i := range l {
		l[i] = c
	}
	return l
}

func (s *Screen) moveTo(x, y int) {
	if s.cur.origin {
		y += s.top
		y = min(max(y, s.top), s.bot)
	} else {
		y = min(max(y, 0), s.rows-1)
	}
	s.cur.x = min(max(x, 0), s.cols-1)
	s.cur.y = y
	s.cur.wrap = false
}

func (s *Screen) eraseCells(y, from, to int) {
	l := s.lines()[y]
	from, to = max(from, 0), min(to, s.cols)
	for x := from; x < to; x++ {
		l[x] = Cell{R: ' ', A: Attr{BG: s.cur.attr.BG}}
	}
	if from > 0 && from < s.cols && l[from-1].R != 0 && isWide(l[from-1].R) {
		l[from-1] = Cell{R: ' ', A: l[from-1].A}
	}
	if to < s.cols && l[to].R == 0 {
		l[to] = Cell{R: ' ', A: l[to].A}
	}
}

func (s *Screen) setAlt(on, clear, saveCursor bool) {
	if on == s.altActive {
		return
	}
	if on {
		if saveCursor {
			s.saved[0] = s.cur
		}
		s.altActive = true
		if clear {
			// In place: switching screens in a loop must not allocate a
			// grid each time.
			for _, l := range s.alt {
				fillBlank(l, Attr{})
			}
		}
		return
	}
	s.altActive = false
	if saveCursor {
		s.cur = s.saved[0]
	}
}

func (s *Screen) saveCursor() {
	i := 0
	if s.altActive {
		i = 1
	}
	s.saved[i] = s.cur
}

func (s *Screen) restoreCursor() {
	i := 0
	if s.altActive {
		i = 1
	}
	s.cur = s.saved[i]
	s.cur.x = min(s.cur.x, s.cols-1)
	s.cur.y = min(s.cur.y, s.rows-1)
}

// fixWide blanks halves of wide characters that lost their other half
// when cells were shifted.
func fixWide(l []Cell) {
	for x := range l {
		switch {
		case l[x].R == 0 && (x == 0 || l[x-1].R == 0 || !isWide(l[x-1].R)):
			l[x] = Cell{R: ' ', A: l[x].A}
		case l[x].R != 0 && isWide(l[x].R) && (x+1 >= len(l) || l[x+1].R != 0):
			l[x] = Cell{R: ' ', A: l[x].A}
		}
	}
}

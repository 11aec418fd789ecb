package vt

import (
	"strconv"
	"unicode/utf8"
)

// Snapshot returns escape sequences that draw the current state on a
// freshly reset terminal of the same size: the main screen, then (when it
// is shown) the alternate screen, the scroll region, the cursor position,
// rendition and visibility. Writing a snapshot to a new Screen reproduces
// this one's visible state.
func (s *Screen) Snapshot() []byte {
	b := make([]byte, 0, s.cols*s.rows+256)
	b = append(b, "\x1b[0m\x1b[H\x1b[2J"...)
	b = s.drawGrid(b, s.main)
	if s.altActive {
		b = append(b, "\x1b[0m\x1b[?1049h\x1b[H\x1b[2J"...)
		b = s.drawGrid(b, s.alt)
	}
	b = append(b, "\x1b[0m"...)
	if s.top != 0 || s.bot != s.rows-1 {
		b = append(b, "\x1b["...)
		b = strconv.AppendInt(b, int64(s.top+1), 10)
		b = append(b, ';')
		b = strconv.AppendInt(b, int64(s.bot+1), 10)
		b = append(b, 'r')
	}
	if s.cur.origin {
		b = append(b, "\x1b[?6h"...)
	}
	if !s.autowrap {
		b = append(b, "\x1b[?7l"...)
	}
	y := s.cur.y
	if s.cur.origin {
		y -= s.top
	}
	b = s.drawCursor(b, y)
	b = appendSGR(b, Attr{}, s.cur.attr)
	if s.cur.charset[0] {
		b = append(b, "\x1b(0"...)
	}
	if s.cur.charset[1] {
		b = append(b, "\x1b)0"...)
	}
	if s.cur.shift == 1 {
		b = append(b, 0x0e)
	}
	if s.hidden {
		b = append(b, "\x1b[?25l"...)
	}
	return b
}

func cup(b []byte, x, y int) []byte {
	b = append(b, "\x1b["...)
	b = strconv.AppendInt(b, int64(y+1), 10)
	b = append(b, ';')
	b = strconv.AppendInt(b, int64(x+1), 10)
	return append(b, 'H')
}

// drawGrid appends the drawing of every non-blank row, writing nothing
// past the last cell that differs from a default blank. A character in the
// last column leaves a pending wrap, which the next cursor move clears.
func (s *Screen) drawGrid(b []byte, g [][]Cell) []byte {
	for y, l := range g {
		end := len(l)
		for end > 0 && l[end-1] == blank {
			end--
		}
		if end == 0 {
			continue
		}
		b = cup(b, 0, y)
		cur := Attr{}
		for x := 0; x < end; x++ {
			c := l[x]
			if c.R == 0 {
				continue
			}
			if c.A != cur {
				b = appendSGR(b, cur, c.A)
				cur = c.A
			}
			b = utf8.AppendRune(b, c.R)
		}
		if cur != (Attr{}) {
			b = append(b, "\x1b[0m"...)
		}
	}
	return b
}

func appendSGR(b []byte, from, to Attr) []byte {
	if from == to {
		return b
	}
	b = append(b, "\x1b[0"...)
	f := to.Flags
	for i, code := range []string{"1", "2", "3", "4", "5", "7", "8", "9"} {
		if f&(1<<i) != 0 {
			b = append(b, ';')
			b = append(b, code...)
		}
	}
	b = appendColor(b, to.FG, 30, 90, "38")
	b = appendColor(b, to.BG, 40, 100, "48")
	return append(b, 'm')
}

func appendColor(b []byte, c Color, base, bright int, ext string) []byte {
	switch {
	case c == 0:
		return b
	case c&rgbFlag != 0:
		v := uint32(c &^ rgbFlag)
		b = append(b, ';')
		b = append(b, ext...)
		b = append(b, ";2;"...)
		b = strconv.AppendInt(b, int64(v>>16&0xff), 10)
		b = append(b, ';')
		b = strconv.AppendInt(b, int64(v>>8&0xff), 10)
		b = append(b, ';')
		return strconv.AppendInt(b, int64(v&0xff), 10)
	case c <= 8:
		b = append(b, ';')
		return strconv.AppendInt(b, int64(base+int(c)-1), 10)
	case c <= 16:
		b = append(b, ';')
		return strconv.AppendInt(b, int64(bright+int(c)-9), 10)
	default:
		b = append(b, ';')
		b = append(b, ext...)
		b = append(b, ";5;"...)
		return strconv.AppendInt(b, int64(c-1), 10)
	}
}

// drawCursor positions the cursor. A pending wrap is reproduced by
// rewriting the character in the last column.
func (s *Screen) drawCursor(b []byte, y int) []byte {
	if !s.cur.wrap || s.cols < 2 {
		return cup(b, s.cur.x, y)
	}
	l := s.lines()[s.cur.y]
	x := s.cols - 1
	if l[x].R == 0 {
		x--
	}
	b = cup(b, x, y)
	b = appendSGR(b, Attr{}, l[x].A)
	b = utf8.AppendRune(b, l[x].R)
	return append(b, "\x1b[0m"...)
}

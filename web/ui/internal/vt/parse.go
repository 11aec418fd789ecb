package vt

import "unicode/utf8"

// Parser states.
const (
	stGround = iota
	stEscape
	stEscInter // ESC followed by an intermediate byte
	stCSI
	stOSC    // string until BEL or ST
	stString // DCS, SOS, PM, APC: ignored until ST
	stStrEsc // ESC seen inside a string: ST if followed by '\'
)

// maxParams bounds CSI parameters; more are ignored.
const maxParams = 16

type parser struct {
	state   int
	inter   byte // ESC intermediate or CSI private marker
	private byte
	params  [maxParams]int
	nparams int
	// utf8 holds an incomplete UTF-8 sequence across writes.
	utf8  [utf8.UTFMax]byte
	nutf8 int
	// strRet is the state to return to from stStrEsc.
	strRet int
}

// Write applies terminal output to the screen. It never fails: malformed
// sequences are dropped as terminals drop them.
func (s *Screen) Write(b []byte) {
	p := &s.p
	for i := 0; i < len(b); i++ {
		c := b[i]
		if p.nutf8 > 0 {
			if c&0xc0 == 0x80 {
				p.utf8[p.nutf8] = c
				p.nutf8++
				if utf8.FullRune(p.utf8[:p.nutf8]) {
					r, _ := utf8.DecodeRune(p.utf8[:p.nutf8])
					p.nutf8 = 0
					if p.state == stGround {
						s.print(r)
					}
				}
				continue
			}
			// Broken sequence: show a replacement and reprocess c.
			p.nutf8 = 0
			if p.state == stGround {
				s.print(utf8.RuneError)
			}
		}
		switch p.state {
		case stOSC, stString:
			switch c {
			case 0x07:
				if p.state == stOSC {
					p.state = stGround
				}
			case 0x1b:
				p.strRet = p.state
				p.state = stStrEsc
			case 0x18, 0x1a:
				p.state = stGround
			}
			continue
		case stStrEsc:
			if c == '\\' {
				p.state = stGround
				continue
			}
			p.state = stEscape // an ESC that was not ST starts a new sequence
			p.inter = 0
		}
		if c < 0x20 || c == 0x7f {
			s.control(c)
			continue
		}
		switch p.state {
		case stGround:
			if c < 0x80 {
				s.print(rune(c))
				continue
			}
			if c >= 0xc2 && c <= 0xf4 {
				p.utf8[0] = c
				p.nutf8 = 1
				continue
			}
			s.print(utf8.RuneError)
		case stEscape:
			s.escape(c)
		case stEscInter:
			s.escInter(c)
		case stCSI:
			s.csiByte(c)
		}
	}
}

// control handles C0 controls, which act in any state but strings.
func (s *Screen) control(c byte) {
	p := &s.p
	switch c {
	case 0x1b:
		p.state = stEscape
		p.inter = 0
		return
	case 0x18, 0x1a: // CAN, SUB abort a sequence
		p.state = stGround
		return
	case 0x08:
		if s.cur.x > 0 {
			s.cur.x--
		}
		s.cur.wrap = false
	case 0x09:
		s.tab(1)
	case 0x0a, 0x0b, 0x0c:
		s.index()
		s.cur.wrap = false
	case 0x0d:
		s.cur.x = 0
		s.cur.wrap = false
	case 0x0e:
		s.cur.shift = 1
	case 0x0f:
		s.cur.shift = 0
	}
}

func (s *Screen) tab(n int) {
	for ; n > 0; n-- {
		x := s.cur.x + 1
		for x < s.cols-1 && !s.tabs[x] {
			x++
		}
		s.cur.x = min(x, s.cols-1)
	}
	s.cur.wrap = false
}

func (s *Screen) backTab(n int) {
	for ; n > 0; n-- {
		x := s.cur.x - 1
		for x > 0 && !s.tabs[x] {
			x--
		}
		s.cur.x = max(x, 0)
	}
	s.cur.wrap = false
}

// escape handles the byte after ESC.
func (s *Screen) escape(c byte) {
	p := &s.p
	p.state = stGround
	switch c {
	case '[':
		p.state = stCSI
		p.nparams, p.private, p.inter = 0, 0, 0
		p.params = [maxParams]int{}
	case ']':
		p.state = stOSC
	case 'P', 'X', '^', '_':
		p.state = stString
	case '(', ')', '*', '+', '#', '%', ' ':
		p.state = stEscInter
		p.inter = c
	case '7':
		s.saveCursor()
	case '8':
		s.restoreCursor()
	case 'D':
		s.index()
	case 'E':
		s.cur.x, s.cur.wrap = 0, false
		s.index()
	case 'M':
		s.reverseIndex()
	case 'H':
		if s.cur.x < s.cols {
			s.tabs[s.cur.x] = true
		}
	case 'c':
		s.reset(s.cols, s.rows)
	}
}

func (s *Screen) escInter(c byte) {
	p := &s.p
	if c >= 0x20 && c <= 0x2f {
		return // further intermediates
	}
	p.state = stGround
	switch p.inter {
	case '(':
		s.cur.charset[0] = c == '0'
	case ')':
		s.cur.charset[1] = c == '0'
	case '#':
		if c == '8' { // DECALN: fill with E
			for _, l := range s.lines() {
				for x := range l {
					l[x] = Cell{R: 'E'}
				}
			}
		}
	}
}

// csiByte collects a CSI sequence and runs it at its final byte.
func (s *Screen) csiByte(c byte) {
	p := &s.p
	switch {
	case c >= '0' && c <= '9':
		if p.nparams == 0 {
			p.nparams = 1
		}
		if i := p.nparams - 1; i < maxParams {
			p.params[i] = min(p.params[i]*10+int(c-'0'), 65535)
		}
	case c == ';' || c == ':':
		if p.nparams == 0 {
			p.nparams = 1
		}
		p.nparams++
	case c >= '<' && c <= '?':
		p.private = c
	case c >= 0x20 && c <= 0x2f:
		p.inter = c
	case c >= 0x40 && c <= 0x7e:
		p.state = stGround
		s.csi(c)
	default:
		p.state = stGround
	}
}

// param returns parameter i, or def when it is absent or zero.
func (p *parser) param(i, def int) int {
	if i >= p.nparams || i >= maxParams || p.params[i] == 0 {
		return def
	}
	return p.params[i]
}

func (s *Screen) csi(final byte) {
	p := &s.p
	if p.inter != 0 {
		return // DECSCUSR and friends: nothing visible to keep
	}
	if p.private == '?' {
		if final == 'h' || final == 'l' {
			for i := 0; i < max(p.nparams, 1) && i < maxParams; i++ {
				s.decMode(p.params[i], final == 'h')
			}
		}
		return
	}
	if p.private != 0 {
		return
	}
	n := p.param(0, 1)
	switch final {
	case '@':
		s.insertChars(n)
	case 'A':
		s.cur.y = max(s.cur.y-n, s.regionTop())
		s.cur.wrap = false
	case 'B', 'e':
		s.cur.y = min(s.cur.y+n, s.regionBottom())
		s.cur.wrap = false
	case 'C', 'a':
		s.cur.x = min(s.cur.x+n, s.cols-1)
		s.cur.wrap = false
	case 'D':
		s.cur.x = max(s.cur.x-n, 0)
		s.cur.wrap = false
	case 'E':
		s.cur.y = min(s.cur.y+n, s.regionBottom())
		s.cur.x, s.cur.wrap = 0, false
	case 'F':
		s.cur.y = max(s.cur.y-n, s.regionTop())
		s.cur.x, s.cur.wrap = 0, false
	case 'G', '`':
		s.cur.x = min(max(n-1, 0), s.cols-1)
		s.cur.wrap = false
	case 'H', 'f':
		s.moveTo(p.param(1, 1)-1, n-1)
	case 'I':
		s.tab(n)
	case 'Z':
		s.backTab(n)
	case 'J':
		s.eraseDisplay(p.param(0, 0))
	case 'K':
		s.eraseLine(p.param(0, 0))
	case 'L':
		if s.cur.y >= s.top && s.cur.y <= s.bot {
			s.scrollDown(s.cur.y, s.bot, n)
			s.cur.x, s.cur.wrap = 0, false
		}
	case 'M':
		if s.cur.y >= s.top && s.cur.y <= s.bot {
			s.scrollUp(s.cur.y, s.bot, n)
			s.cur.x, s.cur.wrap = 0, false
		}
	case 'P':
		s.deleteChars(n)
	case 'S':
		s.scrollUp(s.top, s.bot, n)
	case 'T':
		s.scrollDown(s.top, s.bot, n)
	case 'X':
		s.eraseCells(s.cur.y, s.cur.x, s.cur.x+n)
	case 'b':
		s.repeat(n)
	case 'd':
		s.moveTo(s.cur.x, n-1)
		if s.cur.origin {
			s.cur.y = min(max(n-1+s.top, s.top), s.bot)
		}
	case 'g':
		switch p.param(0, 0) {
		case 0:
			if s.cur.x < s.cols {
				s.tabs[s.cur.x] = false
			}
		case 3:
			clear(s.tabs)
		}
	case 'm':
		s.sgr()
	case 'r':
		top, bot := p.param(0, 1)-1, p.param(1, s.rows)-1
		if bot > s.rows-1 {
			bot = s.rows - 1
		}
		if top < bot {
			s.top, s.bot = top, bot
			s.moveTo(0, 0)
		}
	case 's':
		s.saveCursor()
	case 'u':
		s.restoreCursor()
	}
}

func (s *Screen) regionTop() int {
	if s.cur.y >= s.top {
		return s.top
	}
	return 0
}

func (s *Screen) regionBottom() int {
	if s.cur.y <= s.bot {
		return s.bot
	}
	return s.rows - 1
}

func (s *Screen) decMode(mode int, on bool) {
	switch mode {
	case 6:
		s.cur.origin = on
		s.moveTo(0, 0)
	case 7:
		s.autowrap = on
	case 25:
		s.hidden = !on
	case 47, 1047:
		s.setAlt(on, mode == 1047 && on, false)
	case 1049:
		s.setAlt(on, true, true)
	}
}

func (s *Screen) insertChars(n int) {
	l := s.lines()[s.cur.y]
	x := s.cur.x
	n = min(n, s.cols-x)
	copy(l[x+n:], l[x:s.cols-n])
	for i := x; i < x+n; i++ {
		l[i] = Cell{R: ' ', A: Attr{BG: s.cur.attr.BG}}
	}
	fixWide(l)
	s.cur.wrap = false
}

func (s *Screen) deleteChars(n int) {
	l := s.lines()[s.cur.y]
	x := s.cur.x
	n = min(n, s.cols-x)
	copy(l[x:], l[x+n:])
	for i := s.cols - n; i < s.cols; i++ {
		l[i] = Cell{R: ' ', A: Attr{BG: s.cur.attr.BG}}
	}
	fixWide(l)
	s.cur.wrap = false
}

func (s *Screen) repeat(n int) {
	if s.cur.x == 0 && !s.cur.wrap {
		return
	}
	l := s.lines()[s.cur.y]
	x := s.cur.x - 1
	if s.cur.wrap {
		x = s.cur.x
	}
	r := l[x].R
	if r == 0 && x > 0 {
		r = l[x-1].R
	}
	for range min(n, s.cols*s.rows) {
		s.print(r)
	}
}

func (s *Screen) eraseDisplay(mode int) {
	switch mode {
	case 0:
		s.eraseCells(s.cur.y, s.cur.x, s.cols)
		for y := s.cur.y + 1; y < s.rows; y++ {
			s.eraseCells(y, 0, s.cols)
		}
	case 1:
		for y := 0; y < s.cur.y; y++ {
			s.eraseCells(y, 0, s.cols)
		}
		s.eraseCells(s.cur.y, 0, s.cur.x+1)
	case 2, 3:
		for y := 0; y < s.rows; y++ {
			s.eraseCells(y, 0, s.cols)
		}
	}
	s.cur.wrap = false
}

func (s *Screen) eraseLine(mode int) {
	switch mode {
	case 0:
		s.eraseCells(s.cur.y, s.cur.x, s.cols)
	case 1:
		s.eraseCells(s.cur.y, 0, s.cur.x+1)
	case 2:
		s.eraseCells(s.cur.y, 0, s.cols)
	}
	s.cur.wrap = false
}

// sgr applies Select Graphic Rendition parameters.
func (s *Screen) sgr() {
	p := &s.p
	a := &s.cur.attr
	n := max(p.nparams, 1)
	for i := 0; i < n && i < maxParams; i++ {
		v := p.params[i]
		switch {
		case v == 0:
			*a = Attr{}
		case v == 1:
			a.Flags |= Bold
		case v == 2:
			a.Flags |= Dim
		case v == 3:
			a.Flags |= Italic
		case v == 4:
			a.Flags |= Underline
		case v == 5 || v == 6:
			a.Flags |= Blink
		case v == 7:
			a.Flags |= Inverse
		case v == 8:
			a.Flags |= Hidden
		case v == 9:
			a.Flags |= Strike
		case v == 21 || v == 22:
			a.Flags &^= Bold | Dim
		case v == 23:
			a.Flags &^= Italic
		case v == 24:
			a.Flags &^= Underline
		case v == 25:
			a.Flags &^= Blink
		case v == 27:
			a.Flags &^= Inverse
		case v == 28:
			a.Flags &^= Hidden
		case v == 29:
			a.Flags &^= Strike
		case v >= 30 && v <= 37:
			a.FG = Color(v-30) + 1
		case v == 38 || v == 48:
			c, used := p.extColor(i + 1)
			i += used
			if v == 38 {
				a.FG = c
			} else {
				a.BG = c
			}
		case v == 39:
			a.FG = 0
		case v >= 40 && v <= 47:
			a.BG = Color(v-40) + 1
		case v == 49:
			a.BG = 0
		case v >= 90 && v <= 97:
			a.FG = Color(v-90+8) + 1
		case v >= 100 && v <= 107:
			a.BG = Color(v-100+8) + 1
		}
	}
}

// extColor reads a 38/48 colour starting at parameter i and returns it
// with the number of parameters it used.
func (p *parser) extColor(i int) (Color, int) {
	if i >= p.nparams || i >= maxParams {
		return 0, 0
	}
	switch p.params[i] {
	case 5:
		if i+1 < p.nparams && i+1 < maxParams {
			return Color(p.params[i+1]&0xff) + 1, 2
		}
		return 0, 1
	case 2:
		if i+3 < p.nparams && i+3 < maxParams {
			r, g, b := p.params[i+1]&0xff, p.params[i+2]&0xff, p.params[i+3]&0xff
			return rgbFlag | Color(r<<16|g<<8|b), 4
		}
		return 0, p.nparams - i
	}
	return 0, 1
}

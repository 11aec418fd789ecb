package vt

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func TestSequences(t *testing.T) {
	tests := []struct {
		name       string
		cols, rows int
		in         string
		want       string
		cx, cy     int
	}{
		{"plain text", 10, 3, "hello", "hello\n\n", 5, 0},
		{"crlf", 10, 3, "ab\r\ncd", "ab\ncd\n", 2, 1},
		{"wrap", 4, 3, "abcdef", "abcd\nef\n", 2, 1},
		{"pending wrap at edge", 4, 3, "abcd", "abcd\n\n", 3, 0},
		{"scroll", 5, 2, "a\r\nb\r\nc", "b\nc", 1, 1},
		{"backspace overwrite", 10, 1, "abc\bX", "abX", 3, 0},
		{"cup and erase line", 10, 2, "hello\x1b[1;3H\x1b[K", "he\n", 2, 0},
		{"erase display", 5, 2, "abc\r\ndef\x1b[2J", "\n", 3, 1},
		{"erase below", 5, 2, "abc\r\ndef\x1b[1;2H\x1b[J", "a\n", 1, 0},
		{"insert delete chars", 10, 1, "abcdef\x1b[1;2H\x1b[2P\x1b[1@", "a def", 1, 0},
		{"insert line", 5, 3, "a\r\nb\r\nc\x1b[2;1H\x1b[L", "a\n\nb", 0, 1},
		{"delete line", 5, 3, "a\r\nb\r\nc\x1b[1;1H\x1b[M", "b\nc\n", 0, 0},
		{"scroll region", 5, 4, "top\x1b[2;3r\x1b[3;1Hx\ny\nz", "top\n y\n  z\n", 3, 2},
		{"reverse index", 5, 2, "a\r\nb\x1b[1;1H\x1bM", "\na", 0, 0},
		{"tab", 20, 1, "a\tb", "a       b", 9, 0},
		{"alt screen", 10, 2, "main\x1b[?1049halt", "    alt\n", 7, 0},
		{"alt screen restore", 10, 2, "main\x1b[?1049halt\x1b[?1049l", "main\n", 4, 0},
		{"osc title ignored", 10, 1, "\x1b]0;title\x07ok", "ok", 2, 0},
		{"osc 8 hyperlink shows text only", 20, 1, "\x1b]8;;https://evil.test/\x1b\\click\x1b]8;;\x1b\\", "click", 5, 0},
		{"line drawing", 5, 1, "\x1b(0lqk\x1b(B", "┌─┐", 3, 0},
		{"wide char", 6, 1, "a界b", "a界b", 4, 0},
		{"utf8 split across writes", 6, 1, "\xe7\x95", "", 0, 0},
		{"sgr does not print", 10, 1, "\x1b[1;31mred\x1b[0m", "red", 3, 0},
		{"html is text", 40, 1, "<script>alert(1)</script>", "<script>alert(1)</script>", 25, 0},
		{"repeat", 10, 1, "x\x1b[3b", "xxxx", 4, 0},
		{"erase chars", 10, 1, "abcdef\x1b[1;2H\x1b[2X", "a  def", 1, 0},
		{"cursor save restore", 10, 2, "ab\x1b7\x1b[2;5Hz\x1b8c", "abc\n    z", 3, 0},
		{"dcs ignored", 10, 1, "\x1bPqdata\x1b\\ok", "ok", 2, 0},
		{"reset", 10, 1, "junk\x1bcok", "ok", 2, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(tt.cols, tt.rows)
			s.Write([]byte(tt.in))
			if got := s.Text(); got != tt.want {
				t.Errorf("text = %q, want %q", got, tt.want)
			}
			if x, y := s.Cursor(); x != tt.cx || y != tt.cy {
				t.Errorf("cursor = %d,%d, want %d,%d", x, y, tt.cx, tt.cy)
			}
		})
	}
}

func TestUTF8AcrossWrites(t *testing.T) {
	s := New(10, 1)
	s.Write([]byte("\xe7\x95"))
	s.Write([]byte("\x8cok"))
	if got := s.Text(); got != "界ok" {
		t.Fatalf("text = %q", got)
	}
}

func TestResizeKeepsCursorRow(t *testing.T) {
	s := New(10, 4)
	s.Write([]byte("1\r\n2\r\n3\r\n4"))
	s.Resize(10, 2)
	if got := s.Text(); got != "3\n4" {
		t.Fatalf("text = %q", got)
	}
	s.Resize(3, 2)
	s.Write([]byte("xyz"))
	if got := s.Text(); got != "3\n4yz" && got != "3\nxyz" {
		t.Logf("after narrow write: %q", s.Text())
	}
}

// sameState compares two screens cell by cell, with cursor and modes.
func sameState(t *testing.T, want, got *Screen) {
	t.Helper()
	if want.altActive != got.altActive {
		t.Fatalf("alt screen %v, want %v", got.altActive, want.altActive)
	}
	for y := range want.rows {
		for x := range want.cols {
			if w, g := want.lines()[y][x], got.lines()[y][x]; w != g {
				t.Fatalf("cell %d,%d = %+v, want %+v\nwant screen:\n%s\ngot screen:\n%s", x, y, g, w, want.Text(), got.Text())
			}
		}
	}
	if want.altActive {
		for y := range want.rows {
			for x := range want.cols {
				if w, g := want.main[y][x], got.main[y][x]; w != g {
					t.Fatalf("main cell %d,%d = %+v, want %+v", x, y, g, w)
				}
			}
		}
	}
	if want.cur.x != got.cur.x || want.cur.y != got.cur.y || want.cur.wrap != got.cur.wrap {
		t.Fatalf("cursor %d,%d wrap=%v, want %d,%d wrap=%v", got.cur.x, got.cur.y, got.cur.wrap, want.cur.x, want.cur.y, want.cur.wrap)
	}
	if want.cur.attr != got.cur.attr || want.hidden != got.hidden || want.top != got.top || want.bot != got.bot {
		t.Fatalf("state differs: attr %+v/%+v hidden %v/%v region %d-%d/%d-%d", got.cur.attr, want.cur.attr,
			got.hidden, want.hidden, got.top, got.bot, want.top, want.bot)
	}
}

// TestSnapshotRoundTrip checks that a snapshot drawn on a fresh screen
// reproduces the state, for scripted and random streams, and that the
// screens stay identical when the same output follows.
func TestSnapshotRoundTrip(t *testing.T) {
	streams := []string{
		"plain\r\nlines\r\n",
		"\x1b[1;31mred\x1b[0m \x1b[38;5;208morange\x1b[48;2;1;2;3mrgb\x1b[0m",
		"abcdefghij", // exactly fills a 10-column row: pending wrap
		"a界界界界b界",    // wide chars, one at the edge
		"\x1b[?1049h\x1b[2;4rfull\r\nscreen\x1b[?25l",
		"\x1b(0lqqk\x1b(Bx\x0e",
		strings.Repeat("line of text that wraps around\r\n", 7),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "b", " ", "界", "\r\n", "\r", "\n", "\b", "\t", "\x1b[1m", "\x1b[0m", "\x1b[31m",
		"\x1b[44m", "\x1b[7m", "\x1b[K", "\x1b[1K", "\x1b[J", "\x1b[2J", "\x1b[H", "\x1b[3;4H", "\x1b[A", "\x1b[5C",
		"\x1b[2L", "\x1b[M", "\x1b[2P", "\x1b[3@", "\x1b[2;5r", "\x1b[r", "\x1bM", "\x1bD", "\x1b7", "\x1b8",
		"\x1b[?1049h", "\x1b[?1049l", "\x1b[?25l", "\x1b[?25h", "\x1b[S", "\x1b[T", "\x1b[2X", "\x1b(0q\x1b(B",
		"\x1b]0;t\x07", "é", "\x1b[38;2;9;8;7m", "\x1b[10G", "\x1b[3d", "\x1b[?7l", "\x1b[?7h"}
	for range 400 {
		var b strings.Builder
		for range 1 + rng.IntN(80) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		streams = append(streams, b.String())
	}
	for i, in := range streams {
		s := New(10, 5)
		s.Write([]byte(in))
		c := New(10, 5)
		c.Write(s.Snapshot())
		t.Run("", func(t *testing.T) {
			if t.Failed() {
				return
			}
			defer func() {
				if t.Failed() {
					t.Logf("stream %d: %q\nsnapshot: %q", i, in, s.Snapshot())
				}
			}()
			sameState(t, s, c)
			tail := []byte("tail\x1b[Bmore text after the snapshot\r\n\x1b[1;1Hz")
			s.Write(tail)
			c.Write(tail)
			sameState(t, s, c)
		})
	}
}

func BenchmarkWrite(b *testing.B) {
	chunk := []byte(strings.Repeat("\x1b[1;32muser@host\x1b[0m:\x1b[34m~/src\x1b[0m$ ls -la\r\ndrwxr-xr-x 2 user user 4096 Jan  1 00:00 dir\r\n", 20))
	s := New(120, 40)
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		s.Write(chunk)
	}
}

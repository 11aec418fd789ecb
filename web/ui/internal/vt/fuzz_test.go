package vt

import (
	"testing"
)

// TestHugeSizeClamped: a 65535x65535 screen (as a hostile client could
// announce) is clamped, in New and in Resize, and switching to the
// alternate screen does not allocate a new grid each time.
func TestHugeSizeClamped(t *testing.T) {
	s := New(65535, 65535)
	if c, r := s.Size(); c != MaxCols || r != MaxRows {
		t.Fatalf("New(65535, 65535) is %dx%d, want %dx%d", c, r, MaxCols, MaxRows)
	}
	if len(s.main) != MaxRows || len(s.main[0]) != MaxCols || len(s.alt) != MaxRows {
		t.Fatalf("grid is %dx%d", len(s.main[0]), len(s.main))
	}
	s.Resize(80, 24)
	s.Resize(1<<31-1, 1<<31-1)
	if c, r := s.Size(); c != MaxCols || r != MaxRows {
		t.Fatalf("Resize(2^31-1, 2^31-1) is %dx%d", c, r)
	}
	s.Resize(-5, 0)
	if c, r := s.Size(); c != 1 || r != 1 {
		t.Fatalf("Resize(-5, 0) is %dx%d", c, r)
	}
	s = New(MaxCols, MaxRows)
	swap := []byte("\x1b[?1049h\x1b[?1049l")
	allocs := testing.AllocsPerRun(20, func() { s.Write(swap) })
	if allocs > 0 {
		t.Errorf("%.0f allocations per alternate screen switch", allocs)
	}
}

// checkInvariants fails when the screen's state could make a later write
// index out of range.
func checkInvariants(t *testing.T, s *Screen) {
	t.Helper()
	if s.cols < 1 || s.rows < 1 || s.cols > MaxCols || s.rows > MaxRows {
		t.Fatalf("size %dx%d", s.cols, s.rows)
	}
	for _, g := range [][][]Cell{s.main, s.alt} {
		if len(g) != s.rows {
			t.Fatalf("%d rows, want %d", len(g), s.rows)
		}
		for y, l := range g {
			if len(l) != s.cols {
				t.Fatalf("row %d has %d cells, want %d", y, len(l), s.cols)
			}
		}
	}
	if s.cur.x < 0 || s.cur.x >= s.cols || s.cur.y < 0 || s.cur.y >= s.rows {
		t.Fatalf("cursor %d,%d outside %dx%d", s.cur.x, s.cur.y, s.cols, s.rows)
	}
	if s.top < 0 || s.bot >= s.rows || s.top > s.bot {
		t.Fatalf("scroll region %d-%d in %d rows", s.top, s.bot, s.rows)
	}
	if len(s.tabs) != s.cols {
		t.Fatalf("%d tab stops for %d columns", len(s.tabs), s.cols)
	}
}

// FuzzScreen applies arbitrary terminal output (what a target sends is
// untrusted) to a small screen, resizes it, and writes more: nothing may
// panic, the state stays in bounds, and a snapshot drawn on a fresh
// screen reproduces it.
func FuzzScreen(f *testing.F) {
	seeds := []string{
		"plain\r\nlines\r\n",
		"\x1b[1;31mred\x1b[0m \x1b[38;5;208morange\x1b[48;2;1;2;3mrgb\x1b[0m",
		"a界界界界b界\xe7\x95",
		"\x1b[?1049h\x1b[2;4rfull\r\nscreen\x1b[?25l\x1b[?1049l",
		"\x1b(0lqqk\x1b(Bx\x0e\x0f",
		"\x1b[65535;65535H\x1b[65535@\x1b[65535P\x1b[65535L\x1b[65535M\x1b[65535b\x1b[65535X",
		"\x1b]8;;https://x.test/\x1b\\link\x1b]8;;\x1b\\\x1bPqdata\x1b\\",
		"\x1b[3g\x1b[5I\x1b[5Z\x1b7\x1b[9;9r\x1b8\x1b[?6h\x1b[99d\x1bc",
		"x\x1b[1;2;3;4;5;6;7;8;9;10;11;12;13;14;15;16;17;18m\x1b[38:2:1:2:3m\x1b[38;5m\x1b[48;2m",
	}
	for i, s := range seeds {
		f.Add(uint8(10+i), uint8(5+i%3), []byte(s), uint8(7), uint8(3), []byte("tail\x1b[Bmore\r\n"))
	}
	f.Fuzz(func(t *testing.T, cols, rows uint8, out []byte, cols2, rows2 uint8, more []byte) {
		// Small screens keep each run fast; the clamp is tested above.
		s := New(int(cols%64), int(rows%32))
		s.Write(out)
		checkInvariants(t, s)
		c := New(s.cols, s.rows)
		c.Write(s.Snapshot())
		checkInvariants(t, c)
		if c.Text() != s.Text() {
			t.Fatalf("snapshot redraws %q, want %q", c.Text(), s.Text())
		}
		s.Resize(int(cols2%64), int(rows2%32))
		checkInvariants(t, s)
		s.Write(more)
		checkInvariants(t, s)
		_ = s.Snapshot()
	})
}

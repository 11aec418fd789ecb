package policy

import (
	"fmt"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker/config"
)

// window is a compiled config.Window. An occurrence of the window belongs
// to the calendar day (in loc) it starts on: it runs from that day's start
// clock time to its end clock time, or to the next day's end clock time
// when end is not after start (the window spans midnight; start == end is
// a full 24-hour occurrence). Occurrences are half-open: [start, end).
type window struct {
	loc        *time.Location
	days       [7]bool // indexed by time.Weekday of the occurrence's start day
	start, end int     // minutes after local midnight, 0..1440
}

// compileWindow parses w; a nil w (no window) compiles to nil, meaning
// always open.
func compileWindow(w *config.Window) (*window, error) {
	if w == nil {
		return nil, nil
	}
	c := &window{loc: time.UTC, end: 24 * 60}
	if w.TZ != "" {
		loc, err := time.LoadLocation(w.TZ)
		if err != nil {
			return nil, fmt.Errorf("policy: window tz %q: %w", w.TZ, err)
		}
		c.loc = loc
	}
	if len(w.Days) == 0 {
		c.days = [7]bool{true, true, true, true, true, true, true}
	}
	for _, d := range w.Days {
		wd, ok := config.ParseWeekday(d)
		if !ok {
			return nil, fmt.Errorf("policy: window day %q: must be mon..sun", d)
		}
		c.days[wd] = true
	}
	var err error
	if w.Start != "" {
		if c.start, err = config.ParseClock(w.Start); err != nil {
			return nil, fmt.Errorf("policy: window start %q: %w", w.Start, err)
		}
	}
	if w.End != "" {
		if c.end, err = config.ParseClock(w.End); err != nil {
			return nil, fmt.Errorf("policy: window end %q: %w", w.End, err)
		}
	}
	return c, nil
}

// occurrence returns the bounds of the occurrence starting on the given
// local calendar day.
func (w *window) occurrence(y int, m time.Month, d int) (start, end time.Time) {
	start = localInstant(y, m, d, w.start, w.loc)
	if w.end > w.start {
		return start, localInstant(y, m, d, w.end, w.loc)
	}
	return start, localInstant(y, m, d+1, w.end, w.loc)
}

// contains reports whether t lies in an occurrence of the window and, if
// so, when that occurrence ends. A nil window always contains t and never
// ends.
func (w *window) contains(t time.Time) (bool, time.Time) {
	if w == nil {
		return true, time.Time{}
	}
	y, m, d := t.In(w.loc).Date()
	// An occurrence lasts at most one day of wall-clock time, so only the
	// occurrences starting today and yesterday can contain t.
	for _, back := range []int{0, 1} {
		day := time.Date(y, m, d-back, 12, 0, 0, 0, time.UTC)
		if !w.days[day.Weekday()] {
			continue
		}
		s, e := w.occurrence(day.Year(), day.Month(), day.Day())
		if !t.Before(s) && t.Before(e) {
			return true, e
		}
	}
	return false, time.Time{}
}

// clip returns the end of the stretch of open window that starts at from,
// capped at want. Back-to-back occurrences (a mon–fri 00:00–24:00 window
// on a Thursday night) count as one stretch. It returns from when from is
// outside the window.
func (w *window) clip(from, want time.Time) time.Time {
	if w == nil {
		return want
	}
	in, end := w.contains(from)
	if !in {
		return from
	}
	for end.Before(want) {
		in, next := w.contains(end)
		if !in || !next.After(end) {
			return end
		}
		end = next
	}
	return want
}

func (w *window) String() string {
	if w == nil {
		return "always"
	}
	var days string
	for d := time.Monday; ; d = (d + 1) % 7 {
		if w.days[d] {
			if days != "" {
				days += ","
			}
			days += strings.ToLower(d.String()[:3])
		}
		if d == time.Sunday {
			break
		}
	}
	return fmt.Sprintf("%s %02d:%02d-%02d:%02d %s", days, w.start/60, w.start%60, w.end/60, w.end%60, w.loc)
}

// localInstant returns the first instant at which the wall clock in loc
// shows the given day and minutes after midnight, or a later time. It
// differs from time.Date only around clock changes: a time skipped when
// clocks go forward maps to the instant of the change, and a time that
// occurs twice when clocks go back maps to its first occurrence.
func localInstant(y int, m time.Month, d, minutes int, loc *time.Location) time.Time {
	want := time.Date(y, m, d, 0, minutes, 0, 0, time.UTC) // wall clock, normalized
	c := time.Date(want.Year(), want.Month(), want.Day(), want.Hour(), want.Minute(), 0, 0, loc)
	got := wallClock(c)
	switch {
	case got.Equal(want):
		// The same wall time may also occur earlier, before clocks went back.
		zoneStart, _ := c.ZoneBounds()
		if !zoneStart.IsZero() {
			_, prevOffset := zoneStart.Add(-time.Nanosecond).Zone()
			_, offset := c.Zone()
			if e := c.Add(time.Duration(offset-prevOffset) * time.Second); e.Before(zoneStart) && wallClock(e).Equal(want) {
				return e
			}
		}
		return c
	case got.After(want):
		// want was skipped and c lies after the change: the change is the
		// first instant showing a later wall time.
		zoneStart, _ := c.ZoneBounds()
		return zoneStart
	default:
		// want was skipped and c lies before the change.
		_, zoneEnd := c.ZoneBounds()
		return zoneEnd
	}
}

// wallClock returns t's wall-clock reading in its own location, expressed
// as a UTC time so readings can be compared.
func wallClock(t time.Time) time.Time {
	y, m, d := t.Date()
	h, mi, s := t.Clock()
	return time.Date(y, m, d, h, mi, s, t.Nanosecond(), time.UTC)
}

// Package schedule computes when break-glass drills fall due: a calendar
// period ("quarterly", "monthly") with an optional preferred weekday, or a
// five-field cron expression, in a time zone.
package schedule

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Schedule yields due times.
type Schedule interface {
	// Next returns the first due time strictly after t.
	Next(t time.Time) time.Time
	// String is the schedule as written.
	String() string
}

// Spec is a schedule as configured.
type Spec struct {
	// Expr is "quarterly", "monthly" or a cron expression
	// ("minute hour day-of-month month day-of-week"). Default: quarterly.
	Expr string
	// Weekday is the preferred weekday (mon..sun) of a calendar schedule:
	// the drill is due on the last such day of the period. Default: the
	// period's last day. Not allowed with a cron expression.
	Weekday string
	// At is the HH:MM the drill is due on its day, for calendar schedules.
	// Default: 10:00.
	At string
	// TZ is an IANA time zone. Default: UTC.
	TZ string
}

// Parse checks a Spec and returns its Schedule.
func Parse(s Spec) (Schedule, error) {
	loc := time.UTC
	if s.TZ != "" {
		l, err := time.LoadLocation(s.TZ)
		if err != nil {
			return nil, fmt.Errorf("schedule: unknown time zone %q", s.TZ)
		}
		loc = l
	}
	expr := strings.TrimSpace(s.Expr)
	switch strings.ToLower(expr) {
	case "", "quarterly", "monthly":
		months := 3
		if strings.EqualFold(expr, "monthly") {
			months = 1
		}
		c := calendar{months: months, loc: loc, minute: 10 * 60, weekday: -1}
		if s.Weekday != "" {
			d, ok := parseWeekday(s.Weekday)
			if !ok {
				return nil, fmt.Errorf("schedule: weekday must be mon..sun, not %q", s.Weekday)
			}
			c.weekday = d
		}
		if s.At != "" {
			m, err := parseClock(s.At)
			if err != nil {
				return nil, fmt.Errorf("schedule: at: %w", err)
			}
			c.minute = m
		}
		return c, nil
	}
	if s.Weekday != "" || s.At != "" {
		return nil, errors.New("schedule: weekday and at apply to quarterly and monthly schedules; write them into the cron expression")
	}
	c, err := parseCron(expr)
	if err != nil {
		return nil, err
	}
	c.loc = loc
	return c, nil
}

// calendar is due once per period of months (aligned to January), on the
// period's last day or last preferred weekday, at minute after midnight.
type calendar struct {
	months  int
	weekday time.Weekday // -1: the last day of the period
	minute  int
	loc     *time.Location
}

func (c calendar) String() string {
	name := "quarterly"
	if c.months == 1 {
		name = "monthly"
	}
	day := "last day"
	if c.weekday >= 0 {
		day = "last " + c.weekday.String()
	}
	return fmt.Sprintf("%s (%s, %02d:%02d %s)", name, day, c.minute/60, c.minute%60, c.loc)
}

// dueIn returns the due time of the period starting in month m of year y.
func (c calendar) dueIn(y int, m time.Month) time.Time {
	// Day 0 of the month after the period is the period's last day.
	last := time.Date(y, m+time.Month(c.months), 0, 0, 0, 0, 0, c.loc)
	if c.weekday >= 0 {
		back := (int(last.Weekday()) - int(c.weekday) + 7) % 7
		last = last.AddDate(0, 0, -back)
	}
	return time.Date(last.Year(), last.Month(), last.Day(), c.minute/60, c.minute%60, 0, 0, c.loc)
}

// Next implements Schedule.
func (c calendar) Next(t time.Time) time.Time {
	lt := t.In(c.loc)
	start := time.Month((int(lt.Month())-1)/c.months*c.months + 1)
	y := lt.Year()
	for range 3 {
		if d := c.dueIn(y, start); d.After(t) {
			return d
		}
		start += time.Month(c.months)
		if start > 12 {
			start -= 12
			y++
		}
	}
	return time.Time{} // unreachable: a later period is always due later
}

// Quarter names the calendar quarter of t in UTC, e.g. "2026Q4".
func Quarter(t time.Time) string {
	t = t.UTC()
	return fmt.Sprintf("%dQ%d", t.Year(), (int(t.Month())-1)/3+1)
}

// ParseQuarter returns the UTC bounds [start, end) of a quarter written as
// "2026Q4" (case-insensitive).
func ParseQuarter(s string) (time.Time, time.Time, error) {
	var y, q int
	if _, err := fmt.Sscanf(strings.ToUpper(strings.TrimSpace(s)), "%4dQ%1d", &y, &q); err != nil || q < 1 || q > 4 || y < 2000 || len(strings.TrimSpace(s)) != 6 {
		return time.Time{}, time.Time{}, fmt.Errorf("quarter must look like 2026Q4, not %q", s)
	}
	start := time.Date(y, time.Month((q-1)*3+1), 1, 0, 0, 0, 0, time.UTC)
	return start, start.AddDate(0, 3, 0), nil
}

func parseWeekday(s string) (time.Weekday, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	for d := time.Sunday; d <= time.Saturday; d++ {
		name := strings.ToLower(d.String())
		if s == name || s == name[:3] {
			return d, true
		}
	}
	return 0, false
}

func parseClock(s string) (int, error) {
	var h, m int
	if _, err := fmt.Sscanf(s, "%d:%d", &h, &m); err != nil || len(s) != 5 || h < 0 || h > 23 || m < 0 || m > 59 {
		return 0, fmt.Errorf("must be HH:MM between 00:00 and 23:59, not %q", s)
	}
	return h*60 + m, nil
}

package policy

import (
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
)

func TestWindowContains(t *testing.T) {
	berlin, ny := mustLoc(t, "Europe/Berlin"), mustLoc(t, "America/New_York")
	office := &config.Window{TZ: "Europe/Berlin", Days: []string{"mon", "tue", "wed", "thu", "fri"}, Start: "09:00", End: "18:00"}
	night := &config.Window{Days: []string{"fri"}, Start: "22:00", End: "06:00"} // UTC
	dailyBerlin := &config.Window{TZ: "Europe/Berlin", Start: "09:00", End: "18:00"}
	nightBerlin := &config.Window{TZ: "Europe/Berlin", Start: "22:00", End: "06:00"}
	tests := []struct {
		name string
		w    *config.Window
		t    time.Time
		in   bool
		end  time.Time // when in
	}{
		{"no window is always open", nil, utc(2026, 1, 4, 3, 0), true, time.Time{}},
		{"default clock, weekend only: saturday", &config.Window{Days: []string{"sat", "sun"}}, utc(2026, 1, 3, 0, 0), true, utc(2026, 1, 4, 0, 0)},
		{"default clock, weekend only: monday", &config.Window{Days: []string{"sat", "sun"}}, utc(2026, 1, 5, 0, 0), false, time.Time{}},
		{"office: one second before opening", office, at(berlin, 2026, 1, 5, 9, 0).Add(-time.Second), false, time.Time{}},
		{"office: opening instant is inside", office, at(berlin, 2026, 1, 5, 9, 0), true, at(berlin, 2026, 1, 5, 18, 0)},
		{"office: last nanosecond is inside", office, at(berlin, 2026, 1, 5, 18, 0).Add(-1), true, at(berlin, 2026, 1, 5, 18, 0)},
		{"office: closing instant is outside", office, at(berlin, 2026, 1, 5, 18, 0), false, time.Time{}},
		{"office: saturday", office, at(berlin, 2026, 1, 10, 12, 0), false, time.Time{}},
		{"office: time zone applies (10:00 UTC is 11:00 CET)", office, utc(2026, 1, 5, 16, 59), true, utc(2026, 1, 5, 17, 0)},
		{"office: 17:00 UTC is 18:00 CET", office, utc(2026, 1, 5, 17, 0), false, time.Time{}},
		{"midnight: before start", night, utc(2026, 1, 9, 21, 59), false, time.Time{}},
		{"midnight: at start friday", night, utc(2026, 1, 9, 22, 0), true, utc(2026, 1, 10, 6, 0)},
		{"midnight: saturday morning belongs to friday", night, utc(2026, 1, 10, 5, 59), true, utc(2026, 1, 10, 6, 0)},
		{"midnight: end is outside", night, utc(2026, 1, 10, 6, 0), false, time.Time{}},
		{"midnight: saturday night is not friday", night, utc(2026, 1, 10, 22, 30), false, time.Time{}},
		{"midnight: friday early morning belongs to thursday", night, utc(2026, 1, 9, 3, 0), false, time.Time{}},
		{"midnight: exact midnight inside", night, utc(2026, 1, 10, 0, 0), true, utc(2026, 1, 10, 6, 0)},
		{"start equals end is a full day", &config.Window{Start: "09:00", End: "09:00", Days: []string{"mon"}}, utc(2026, 1, 6, 8, 59), true, utc(2026, 1, 6, 9, 0)},
		{"start equals end, next day at end", &config.Window{Start: "09:00", End: "09:00", Days: []string{"mon"}}, utc(2026, 1, 6, 9, 0), false, time.Time{}},
		{"end 24:00", &config.Window{Start: "20:00", End: "24:00"}, utc(2026, 1, 6, 23, 59), true, utc(2026, 1, 7, 0, 0)},

		// Europe/Berlin: clocks go forward 2026-03-29 02:00 CET -> 03:00 CEST (01:00 UTC)
		// and back 2026-10-25 03:00 CEST -> 02:00 CET (01:00 UTC).
		{"dst spring: day before opens 08:00 UTC", dailyBerlin, utc(2026, 3, 28, 8, 0), true, utc(2026, 3, 28, 17, 0)},
		{"dst spring: day before 07:59 UTC closed", dailyBerlin, utc(2026, 3, 28, 7, 59), false, time.Time{}},
		{"dst spring: transition day opens 07:00 UTC", dailyBerlin, utc(2026, 3, 29, 7, 0), true, utc(2026, 3, 29, 16, 0)},
		{"dst spring: transition day 06:59 UTC closed", dailyBerlin, utc(2026, 3, 29, 6, 59), false, time.Time{}},
		{"dst spring night: short night ends 04:00 UTC", nightBerlin, utc(2026, 3, 28, 21, 0), true, utc(2026, 3, 29, 4, 0)},
		{"dst spring night: 04:00 UTC is 06:00 CEST", nightBerlin, utc(2026, 3, 29, 4, 0), false, time.Time{}},
		{"dst autumn night: long night ends 05:00 UTC", nightBerlin, utc(2026, 10, 24, 20, 0), true, utc(2026, 10, 25, 5, 0)},
		{"dst autumn night: 04:30 UTC still inside", nightBerlin, utc(2026, 10, 25, 4, 30), true, utc(2026, 10, 25, 5, 0)},
		{"skipped start 02:30 opens at the change", &config.Window{TZ: "Europe/Berlin", Start: "02:30", End: "05:00"}, utc(2026, 3, 29, 1, 0), true, utc(2026, 3, 29, 3, 0)},
		{"skipped start 02:30: just before the change", &config.Window{TZ: "Europe/Berlin", Start: "02:30", End: "05:00"}, utc(2026, 3, 29, 1, 0).Add(-1), false, time.Time{}},
		{"repeated end 02:30 closes at its first occurrence", &config.Window{TZ: "Europe/Berlin", Start: "00:00", End: "02:30"}, utc(2026, 10, 25, 0, 29), true, utc(2026, 10, 25, 0, 30)},
		{"repeated end 02:30: second occurrence is outside", &config.Window{TZ: "Europe/Berlin", Start: "00:00", End: "02:30"}, utc(2026, 10, 25, 1, 0), false, time.Time{}},

		// America/New_York: forward 2026-03-08 02:00 EST -> 03:00 EDT.
		{"new york dst: opens 13:00 UTC", &config.Window{TZ: "America/New_York", Start: "09:00", End: "17:00"}, at(ny, 2026, 3, 8, 9, 0), true, utc(2026, 3, 8, 21, 0)},
		{"new york dst: 12:59 UTC closed", &config.Window{TZ: "America/New_York", Start: "09:00", End: "17:00"}, utc(2026, 3, 8, 12, 59), false, time.Time{}},
		{"new york dst: day before opens 14:00 UTC", &config.Window{TZ: "America/New_York", Start: "09:00", End: "17:00"}, utc(2026, 3, 7, 13, 59), false, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := compileWindow(tt.w)
			if err != nil {
				t.Fatal(err)
			}
			in, end := w.contains(tt.t)
			if in != tt.in || !end.Equal(tt.end) {
				t.Fatalf("contains(%s) = %v, %s; want %v, %s", tt.t.UTC(), in, end.UTC(), tt.in, tt.end.UTC())
			}
		})
	}
}

func TestLocalInstant(t *testing.T) {
	berlin := mustLoc(t, "Europe/Berlin")
	tests := []struct {
		name    string
		y       int
		m       time.Month
		d, mins int
		want    time.Time
	}{
		{"ordinary", 2026, 1, 5, 9 * 60, utc(2026, 1, 5, 8, 0)},
		{"24:00 is next midnight", 2026, 1, 5, 24 * 60, utc(2026, 1, 5, 23, 0)},
		{"skipped 02:00 maps to the change", 2026, 3, 29, 2 * 60, utc(2026, 3, 29, 1, 0)},
		{"skipped 02:59 maps to the change", 2026, 3, 29, 2*60 + 59, utc(2026, 3, 29, 1, 0)},
		{"03:00 right after the change", 2026, 3, 29, 3 * 60, utc(2026, 3, 29, 1, 0)},
		{"repeated 02:00 first occurrence", 2026, 10, 25, 2 * 60, utc(2026, 10, 25, 0, 0)},
		{"repeated 02:59 first occurrence", 2026, 10, 25, 2*60 + 59, utc(2026, 10, 25, 0, 59)},
		{"03:00 after clocks went back", 2026, 10, 25, 3 * 60, utc(2026, 10, 25, 2, 0)},
	}
	for _, tt := range tests {
		if got := localInstant(tt.y, tt.m, tt.d, tt.mins, berlin); !got.Equal(tt.want) {
			t.Errorf("%s: got %s, want %s", tt.name, got.UTC(), tt.want)
		}
	}
}

func TestGrantWindow(t *testing.T) {
	berlin := mustLoc(t, "Europe/Berlin")
	office := &config.Window{TZ: "Europe/Berlin", Days: []string{"mon", "tue", "wed", "thu", "fri"}, Start: "09:00", End: "18:00"}
	weekdays := &config.Window{Days: []string{"mon", "tue", "wed", "thu", "fri"}}
	nightBerlin := &config.Window{TZ: "Europe/Berlin", Start: "22:00", End: "06:00"}
	tests := []struct {
		name     string
		w        *config.Window
		max      time.Duration
		duration time.Duration
		at       time.Time
		end      time.Time
	}{
		{"no window: full duration", nil, 8 * time.Hour, 2 * time.Hour, utc(2026, 1, 5, 12, 0), utc(2026, 1, 5, 14, 0)},
		{"capped at a max tightened since the request", nil, time.Hour, 2 * time.Hour, utc(2026, 1, 5, 12, 0), utc(2026, 1, 5, 13, 0)},
		{"fits in the window", office, 8 * time.Hour, time.Hour, at(berlin, 2026, 1, 5, 16, 0), at(berlin, 2026, 1, 5, 17, 0)},
		{"ends exactly at window end", office, 8 * time.Hour, 2 * time.Hour, at(berlin, 2026, 1, 5, 16, 0), at(berlin, 2026, 1, 5, 18, 0)},
		{"clipped at window end", office, 8 * time.Hour, 8 * time.Hour, at(berlin, 2026, 1, 5, 17, 0), at(berlin, 2026, 1, 5, 18, 0)},
		{"approved outside the window: empty grant", office, 8 * time.Hour, time.Hour, at(berlin, 2026, 1, 5, 18, 0), at(berlin, 2026, 1, 5, 18, 0)},
		{"back-to-back days are one stretch", weekdays, 8 * time.Hour, 8 * time.Hour, utc(2026, 1, 8, 20, 0), utc(2026, 1, 9, 4, 0)},
		{"friday night stops at saturday", weekdays, 8 * time.Hour, 8 * time.Hour, utc(2026, 1, 9, 20, 0), utc(2026, 1, 10, 0, 0)},
		{"multi-day grant across open days", weekdays, 72 * time.Hour, 72 * time.Hour, utc(2026, 1, 6, 0, 0), utc(2026, 1, 9, 0, 0)},
		{"dst spring night is one hour short", nightBerlin, 8 * time.Hour, 8 * time.Hour, utc(2026, 3, 28, 22, 0), utc(2026, 3, 29, 4, 0)},
		{"dst autumn night: 8h fits", nightBerlin, 12 * time.Hour, 8 * time.Hour, utc(2026, 10, 24, 20, 0), utc(2026, 10, 25, 4, 0)},
		{"dst autumn night: 9 real hours", nightBerlin, 12 * time.Hour, 10 * time.Hour, utc(2026, 10, 24, 20, 0), utc(2026, 10, 25, 5, 0)},
		{"broken window: empty grant", &config.Window{TZ: "Nowhere/Else"}, 8 * time.Hour, time.Hour, utc(2026, 1, 5, 12, 0), utc(2026, 1, 5, 12, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := config.Policy{Approvers: []string{"sre"}, MaxDuration: config.Duration(tt.max), Window: tt.w}
			req := broker.Request{Duration: tt.duration}
			start, end := GrantWindow(p, req, tt.at)
			if !start.Equal(tt.at) || !end.Equal(tt.end) {
				t.Fatalf("GrantWindow = %s – %s, want %s – %s", start.UTC(), end.UTC(), tt.at.UTC(), tt.end.UTC())
			}
		})
	}
}

func TestWindowString(t *testing.T) {
	w, err := compileWindow(&config.Window{TZ: "Europe/Berlin", Days: []string{"sun", "mon"}, Start: "22:00", End: "06:30"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := w.String(), "mon,sun 22:00-06:30 Europe/Berlin"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}

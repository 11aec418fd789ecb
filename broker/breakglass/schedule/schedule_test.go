package schedule

import (
	"testing"
	"time"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestNext(t *testing.T) {
	tests := []struct {
		name  string
		spec  Spec
		after string
		want  string
	}{
		{"quarterly default is the quarter's last day", Spec{}, "2026-01-15T00:00:00Z", "2026-03-31T10:00:00Z"},
		{"quarterly after its due time moves on", Spec{Expr: "quarterly"}, "2026-03-31T10:00:00Z", "2026-06-30T10:00:00Z"},
		{"quarterly just before due", Spec{Expr: "quarterly"}, "2026-03-31T09:59:59Z", "2026-03-31T10:00:00Z"},
		{"quarterly last tuesday", Spec{Expr: "quarterly", Weekday: "tue"}, "2026-10-01T00:00:00Z", "2026-12-29T10:00:00Z"},
		{"quarterly last tuesday rolls into next year", Spec{Expr: "quarterly", Weekday: "Tuesday"}, "2026-12-29T11:00:00Z", "2027-03-30T10:00:00Z"},
		{"quarterly at and tz", Spec{Expr: "quarterly", Weekday: "fri", At: "14:30", TZ: "Europe/Berlin"}, "2026-04-01T00:00:00Z", "2026-06-26T12:30:00Z"},
		{"monthly last day of february", Spec{Expr: "monthly"}, "2028-02-01T00:00:00Z", "2028-02-29T10:00:00Z"},
		{"cron every minute", Spec{Expr: "* * * * *"}, "2026-01-01T00:00:30Z", "2026-01-01T00:01:00Z"},
		{"cron first monday-ish: 9:00 on day 1-7 or monday", Spec{Expr: "0 9 1-7 * mon"}, "2026-01-08T00:00:00Z", "2026-01-12T09:00:00Z"},
		{"cron quarterly at 02:15 on the 1st", Spec{Expr: "15 2 1 1,4,7,10 *"}, "2026-04-01T02:15:00Z", "2026-07-01T02:15:00Z"},
		{"cron steps", Spec{Expr: "*/20 8-10/2 * * *"}, "2026-01-01T08:41:00Z", "2026-01-01T10:00:00Z"},
		{"cron sunday as 7", Spec{Expr: "0 0 * * 7"}, "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"},
		{"cron month names", Spec{Expr: "0 12 15 mar-apr *"}, "2026-03-16T00:00:00Z", "2026-04-15T12:00:00Z"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			got := s.Next(mustTime(t, tc.after))
			if want := mustTime(t, tc.want); !got.Equal(want) {
				t.Errorf("Next(%s) = %s, want %s", tc.after, got.UTC().Format(time.RFC3339), tc.want)
			}
		})
	}
}

func TestNeverMatches(t *testing.T) {
	s, err := Parse(Spec{Expr: "0 0 31 2 *"})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Next(time.Now()); !got.IsZero() {
		t.Errorf("31 February is due %s", got)
	}
}

func TestParseErrors(t *testing.T) {
	for _, s := range []Spec{
		{Expr: "weekly"},
		{Expr: "* * * *"},
		{Expr: "60 * * * *"},
		{Expr: "* 24 * * *"},
		{Expr: "* * 0 * *"},
		{Expr: "* * * 13 *"},
		{Expr: "* * * * 8"},
		{Expr: "5-1 * * * *"},
		{Expr: "*/0 * * * *"},
		{Expr: "* * * * * *"},
		{Expr: "x * * * *"},
		{Expr: "quarterly", Weekday: "someday"},
		{Expr: "quarterly", At: "25:00"},
		{Expr: "quarterly", At: "9:00"},
		{Expr: "quarterly", TZ: "Mars/Olympus"},
		{Expr: "0 9 * * *", Weekday: "mon"},
	} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%+v) accepted", s)
		}
	}
}

func TestQuarter(t *testing.T) {
	if q := Quarter(mustTime(t, "2026-11-03T00:00:00Z")); q != "2026Q4" {
		t.Errorf("quarter %s", q)
	}
	start, end, err := ParseQuarter("2026q4")
	if err != nil || !start.Equal(mustTime(t, "2026-10-01T00:00:00Z")) || !end.Equal(mustTime(t, "2027-01-01T00:00:00Z")) {
		t.Errorf("ParseQuarter: %s %s %v", start, end, err)
	}
	for _, bad := range []string{"2026Q5", "2026Q0", "Q4", "2026-Q4", "26Q4", "2026Q41"} {
		if _, _, err := ParseQuarter(bad); err == nil {
			t.Errorf("ParseQuarter(%q) accepted", bad)
		}
	}
}

package sqlnorm

import (
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"SELECT 1", "SELECT $1"},
		{"select * from t1 where id = 42 and x2 = 'abc'", "select * from t1 where id = $1 and x2 = $2"},
		{"ALTER ROLE bob PASSWORD 'hunter2'", "ALTER ROLE bob PASSWORD $1"},
		{"SELECT 'it''s'", "SELECT $1"},
		{`SELECT E'a\'b', 'c'`, "SELECT $1, $2"},
		{"SELECT B'1010', X'ff', N'x', U&'d\\0061t'", "SELECT $1, $2, $3, $4"},
		{"SELECT $$secret$$, $fn$ body 'x' $fn$", "SELECT $1, $2"},
		{"SELECT * FROM t WHERE a = $1 AND b = 'v'", "SELECT * FROM t WHERE a = $1 AND b = $2"},
		{"SELECT $2, 7", "SELECT $2, $3"},
		{`SELECT "weird 'col'" FROM "T"`, `SELECT "weird 'col'" FROM "T"`},
		{"SELECT 1.5e10, .5, 0x1F, 1_000", "SELECT $1, $2, $3, $4"},
		{"/* 1 MiB of filler */ DELETE FROM patients", "  DELETE FROM patients"},
		{"SELECT 1 -- trailing 'note'", "SELECT $1"},
		{"SELECT 1 -- c\n, 2", "SELECT $1 \n, $2"},
		{"SELECT /* a /* nested */ b */ x", "SELECT   x"},
		{"SELECT 'unterminated secret", "SELECT $1"},
		{"SELECT 'a'\n  'continued'", "SELECT $1"},
		{"SELECT 'a' 'b'", "SELECT $1 $2"},
		{"INSERT INTO t2 (c3) VALUES (interval '1 day')", "INSERT INTO t2 (c3) VALUES (interval $1)"},
		{"SELECT foo$bar, col_1e5 FROM x", "SELECT foo$bar, col_1e5 FROM x"},
		{"SELECT NULL, true", "SELECT NULL, true"},
	}
	for _, tc := range tests {
		if got := Normalize(tc.in); got != tc.want {
			t.Errorf("Normalize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestNoLiteralSurvives plants a secret in every literal form and checks
// the normalised text never holds it.
func TestNoLiteralSurvives(t *testing.T) {
	const secret = "S3cr3tV4lue"
	forms := []string{
		"'" + secret + "'", "E'" + secret + "'", "e'\\'" + secret + "'", "N'" + secret + "'",
		"U&'" + secret + "'", "$$" + secret + "$$", "$q$" + secret + "$q$", "'x''" + secret + "'",
		"'" + secret, "/* " + secret + " */", "-- " + secret, "/* /* */ " + secret + " */",
		"'a'\n'" + secret + "'",
	}
	for _, f := range forms {
		for _, sql := range []string{"SELECT " + f, "UPDATE t SET c = " + f + " WHERE id = 3", f} {
			if got := Normalize(sql); strings.Contains(got, secret) {
				t.Errorf("Normalize(%q) = %q keeps the literal", sql, got)
			}
		}
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"SELECT 1", "SELECT 'a''b'", "E'\\''", "$a$ $a$", "/* /* */", "--", "U&'x'", "$1 $2", `"q""x"`, "0x", "1e+", "'a'\n'b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		once := Normalize(s)
		if twice := Normalize(once); twice != once {
			t.Fatalf("not idempotent: %q -> %q -> %q", s, once, twice)
		}
		// A string literal holding a marker never keeps it.
		if strings.ContainsAny(s, "'\\") {
			return
		}
		const marker = "ZZmarkerZZ"
		if got := Normalize(s + " '" + marker + "'"); strings.Contains(got, marker) && !strings.Contains(s, marker) {
			t.Fatalf("marker kept: %q", got)
		}
	})
}

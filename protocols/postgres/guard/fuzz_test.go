package guard

import (
	"errors"
	"testing"
)

// FuzzClassify feeds arbitrary statement text (what a client sends in a
// Query or Parse message) to the classifier: it must never panic, and it
// either parses or reports ErrUnparsed.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{
		"DELETE FROM t",
		"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
		"DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$",
		"CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'DELETE FROM t'",
		"COPY (SELECT * FROM public.subjects) TO PROGRAM 'x'",
		"SELECT set_config('role', 'postgres', false); SET ROLE x",
		"ALTER TABLE subjects OWNER TO x",
		"SELECT 'unterminated",
	} {
		f.Add(s)
	}
	c := New([]string{"public.subjects"})
	f.Fuzz(func(t *testing.T, sql string) {
		r, err := c.Classify(sql)
		if err != nil {
			if !errors.Is(err, ErrUnparsed) {
				t.Fatalf("Classify: %v, not ErrUnparsed", err)
			}
			return
		}
		for _, fd := range r.Findings {
			if fd.Stmt < 0 || fd.Stmt >= len(r.Statements) {
				t.Fatalf("finding %+v outside %d statements", fd, len(r.Statements))
			}
		}
	})
}

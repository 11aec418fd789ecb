package guard

import "testing"

// TestGuardTablesFromCatalog: WithTables protects tables as the catalog
// spells them (a quoted mixed-case name only when quoted the same way);
// AllTables, the fail-closed classifier, protects every table.
func TestGuardTablesFromCatalog(t *testing.T) {
	base := New([]string{"audit_trail"})
	withCat := base.WithTables([]string{"public.subjects", "clinical.Visits"})
	all := base.AllTables()
	for _, c := range []struct {
		cls  *Classifier
		sql  string
		want string
	}{
		{base, "ALTER TABLE subjects ADD COLUMN x int", ""},
		{withCat, "ALTER TABLE subjects ADD COLUMN x int", "public.subjects"},
		{withCat, "ALTER TABLE public.subjects ADD COLUMN x int", "public.subjects"},
		{withCat, "ALTER TABLE other.subjects ADD COLUMN x int", ""},
		{withCat, `ALTER TABLE clinical."Visits" ADD COLUMN x int`, "clinical.Visits"},
		{withCat, "ALTER TABLE clinical.visits ADD COLUMN x int", ""},
		{withCat, "ALTER TABLE audit_trail ADD COLUMN x int", "audit_trail"},
		{all, "ALTER TABLE anything ADD COLUMN x int", "anything"},
		{all, "COMMENT ON TABLE s.t IS 'x'", "s.t"},
		{base, "ALTER TABLE anything ADD COLUMN x int", ""},
	} {
		res, err := c.cls.Classify(c.sql)
		if err != nil {
			t.Fatalf("%s: %v", c.sql, err)
		}
		got := ""
		for _, f := range res.Findings {
			if f.Rule == ProtectedDDL {
				got = f.Detail
			}
		}
		if got != c.want {
			t.Errorf("%s: protected_ddl %q, want %q", c.sql, got, c.want)
		}
	}
}

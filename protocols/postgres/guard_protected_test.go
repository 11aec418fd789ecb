package pgproxy

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/protocols/postgres/masking"
	"github.com/custos-pam/custos/recorder/event"
)

// TestGuardProtectedFromDictionary: DDL on a table with a column the data
// dictionary classifies is caught by protected_ddl without the table in
// protected_tables; the table set is resolved against the real catalog
// (glob patterns such as *.*.subject_id), quoted names included. Tables
// without classified columns are not protected, and protected_tables
// still adds its own.
func TestGuardProtectedFromDictionary(t *testing.T) {
	dict, err := masking.Compile(maskDict, []byte("k1"))
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, func(tg *config.Target, o *Options) {
		tg.Roles[0].Guardrails = &config.Guardrails{ProtectedTables: []string{"audit_trail"},
			Rules: map[string]string{"protected_ddl": "deny"}}
		o.DataDictionary = dict
	})
	for _, q := range []string{
		`CREATE TABLE subjects (subject_id text, site text)`,
		`CREATE TABLE "Visits" (subject_id text, visit int)`,
		`CREATE TABLE sites (id int, name text)`,
		`CREATE TABLE audit_trail (id int)`,
		`ALTER TABLE subjects OWNER TO ` + s.role,
		`ALTER TABLE "Visits" OWNER TO ` + s.role,
		`ALTER TABLE sites OWNER TO ` + s.role,
		`ALTER TABLE audit_trail OWNER TO ` + s.role,
	} {
		super(t, s.pg, s.db, q)
	}
	tok, _ := s.token("alice")
	conn := s.connect(t, "alice", tok)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range []struct {
		sql    string
		denied string
	}{
		{`ALTER TABLE subjects ADD COLUMN note text`, "public.subjects"},
		{`ALTER TABLE public.subjects RENAME COLUMN subject_id TO x`, "public.subjects"},
		{`COMMENT ON TABLE subjects IS 'x'`, "public.subjects"},
		{`CREATE INDEX ON subjects (site)`, "public.subjects"},
		{`ALTER TABLE "Visits" ADD COLUMN y int`, "public.Visits"},
		{`ALTER TABLE audit_trail ADD COLUMN y int`, "audit_trail"},
		{`ALTER TABLE sites ADD COLUMN y int`, ""},
		{`ALTER TABLE visits_none_such ADD COLUMN y int`, "!42P01"},
	} {
		_, err := conn.Exec(ctx, c.sql)
		var pe *pgconn.PgError
		switch {
		case c.denied == "":
			if err != nil {
				t.Fatalf("%s: %v", c.sql, err)
			}
		case strings.HasPrefix(c.denied, "!"):
			if !errors.As(err, &pe) || pe.Code != c.denied[1:] {
				t.Fatalf("%s: %v, want the target's %s", c.sql, err, c.denied[1:])
			}
		default:
			if !errors.As(err, &pe) || pe.Code != "42501" || !strings.Contains(pe.Message, "protected_ddl ("+c.denied+")") {
				t.Fatalf("%s: %v, want denied by protected_ddl (%s)", c.sql, err, c.denied)
			}
		}
	}
	conn.Close(ctx)
	s.waitNoSessions(t)
	if n := len(s.rec.Last(t).Find(event.KindNote, "guardrail_catalog")); n != 0 {
		t.Fatalf("%d guardrail_catalog notes: the set resolved", n)
	}
}

// TestGuardProtectedFailsClosed: when the tables with classified columns
// cannot be resolved (here the session's login may hold one connection
// only, so the catalog connection is refused), every table counts as
// protected for the session, and the recording says why.
func TestGuardProtectedFailsClosed(t *testing.T) {
	dict, err := masking.Compile(maskDict, []byte("k1"))
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, func(tg *config.Target, o *Options) {
		tg.Roles[0].Guardrails = &config.Guardrails{Rules: map[string]string{"protected_ddl": "deny"}}
		o.DataDictionary = dict
	})
	super(t, s.pg, s.db, `CREATE TABLE sites (id int, name text)`)
	super(t, s.pg, s.db, `ALTER TABLE sites OWNER TO `+s.role)
	super(t, s.pg, s.db, `ALTER ROLE `+s.role+` CONNECTION LIMIT 1`)
	tok, _ := s.token("alice")
	conn := s.connect(t, "alice", tok)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = conn.Exec(ctx, `ALTER TABLE sites ADD COLUMN y int`)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" || !strings.Contains(pe.Message, "protected_ddl (sites)") {
		t.Fatalf("DDL on an unclassified table with the set unresolved: %v, want denied", err)
	}
	// A read without LIMIT needs an estimate (every table is protected);
	// the estimate's connection is refused too, so it is not let through.
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM sites").Scan(&n); !errors.As(err, &pe) || !strings.Contains(pe.Message, "bulk_export (sites)") {
		t.Fatalf("read without LIMIT with the set unresolved: %v", err)
	}
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil || n != 1 {
		t.Fatalf("the session goes on: %v", err)
	}
	conn.Close(ctx)
	s.waitNoSessions(t)
	notes := s.rec.Last(t).Find(event.KindNote, "guardrail_catalog")
	if len(notes) != 1 || !strings.Contains(notes[0].Text, "every table counts as protected") {
		t.Fatalf("guardrail_catalog notes: %+v", notes)
	}
}

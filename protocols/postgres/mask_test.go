package pgproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/protocols/postgres/masking"
	"github.com/custos-pam/custos/recorder/event"
)

// maskDict is the test data dictionary.
var maskDict = config.DataDictionary{Classifications: []config.Classification{
	{Name: "subject_id", Columns: []string{"*.*.subject_id"}, Values: []string{`^S-[0-9]{4}$`}, KeepPrefix: 2},
	{Name: "dob", Columns: []string{"*.subjects.dob"}, KeepPrefix: 4},
	{Name: "name", Columns: []string{"*.subjects.name"}},
}}

// maskStack is a stack whose target has the plain role "rw", the masked
// role "monitor" (subject_id and dob masked, name nulled) and "analyst"
// (subject_id hashed), over a subjects table whose values appear in no
// statement the tests send.
func maskStack(t *testing.T, key string) *stack {
	t.Helper()
	dict, err := masking.Compile(maskDict, []byte(key))
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, func(tg *config.Target, o *Options) {
		tg.Roles = append(tg.Roles,
			config.Role{Name: "monitor", Masking: map[string]string{"subject_id": "mask", "dob": "mask", "name": "null"}, ResultSample: 2},
			config.Role{Name: "analyst", Masking: map[string]string{"subject_id": "hash", "dob": "pass", "name": "pass", "unknown": "pass"}},
			config.Role{Name: "monitor-unmask", Unmask: &config.Unmask{Role: "monitor", Classifications: []string{"subject_id"}}})
		o.DataDictionary = dict
	})
	for _, q := range []string{
		`CREATE TABLE subjects (subject_id text PRIMARY KEY, dob date, name text, site text, note text)`,
		`INSERT INTO subjects SELECT 'S-' || (1000 + g), date '1980-03-14' + g, 'Ada Lovelace ' || g, 'Leeds', CASE WHEN g = 2 THEN 'S-' || (1000 + g) ELSE 'ok' END FROM generate_series(1, 3) g`,
		`CREATE TABLE visits (subject_id text, visit int)`,
		`INSERT INTO visits SELECT 'S-' || (1000 + g), g FROM generate_series(1, 3) g`,
		`CREATE VIEW v_subjects AS SELECT subject_id AS sid, site FROM subjects`,
		fmt.Sprintf(`ALTER TABLE subjects OWNER TO %s`, s.role),
		fmt.Sprintf(`ALTER TABLE visits OWNER TO %s`, s.role),
		fmt.Sprintf(`ALTER VIEW v_subjects OWNER TO %s`, s.role),
	} {
		super(t, s.pg, s.db, q)
	}
	return s
}

func (s *stack) roleToken(user, role string) string {
	g := s.grant(user)
	g.Role = role
	return s.auth.issue(g)
}

// noSubjectIDs fails when a recording or output holds a real subject ID.
func noSubjectIDs(t *testing.T, what, text string) {
	t.Helper()
	for _, id := range []string{"S-1001", "S-1002", "S-1003", "Ada Lovelace"} {
		if strings.Contains(text, id) {
			t.Fatalf("%s holds %q:\n%s", what, id, text)
		}
	}
}

func TestMaskPsqlSimpleProtocol(t *testing.T) {
	s := maskStack(t, "k1")
	out, err := s.runPsql(t, "alice", s.roleToken("alice", "monitor"), testTarget, "require",
		`SELECT subject_id, dob, name, site, note FROM subjects ORDER BY site, dob;
SELECT upper(name) AS up, subject_id || '' AS cat FROM subjects ORDER BY dob LIMIT 1;
SELECT sid FROM v_subjects LIMIT 1;
COPY subjects TO STDOUT;
COPY (SELECT subject_id FROM subjects) TO STDOUT;
SELECT site FROM subjects LIMIT 1;
INSERT INTO subjects (subject_id) SELECT subject_id FROM subjects LIMIT 1;
BEGIN;
CREATE TABLE uncommitted AS SELECT 'Lyon'::text AS town;
SELECT town FROM uncommitted;
ROLLBACK;
`, "-A", "-F", "|")
	t.Logf("psql:\n%s", out)
	if err != nil {
		t.Fatalf("psql: %v", err)
	}
	noSubjectIDs(t, "psql output", out)
	for _, want := range []string{
		"S-****|1980-**-**||Leeds|ok",     // classified columns masked or nulled
		"S-****|1980-**-**||Leeds|S-****", // note: a value pattern upgrades
		"*** ******** *|*-****",           // expressions: the unknown default
		"\n*-****\n",                      // a view column no pattern names: unknown
		"custos: COPY TO STDOUT is refused for role monitor",
		"\nLeeds\n", // the session continues
		"duplicate key value violates unique constraint",
		// A table the catalog connection cannot see yet is unknown.
		"town\n****\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("psql output lacks %q", want)
		}
	}
	if strings.Count(out, "COPY TO STDOUT is refused") != 2 {
		t.Error("both COPYs must be refused")
	}
	s.waitNoSessions(t)
	// The catalog connection ended with the session.
	for deadline := time.Now().Add(5 * time.Second); ; {
		conn, err := pgx.Connect(context.Background(), s.pg.DSN(s.db))
		if err != nil {
			t.Fatal(err)
		}
		var n int
		err = conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE usename = $1", s.role).Scan(&n)
		conn.Close(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d backends of the session's login left after it ended", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	rec := s.rec.Last(t)
	all := dump(rec.Snapshot())
	noSubjectIDs(t, "the recording", all)
	var refused, errs int
	note := false
	for _, e := range rec.Snapshot() {
		if e.Kind == event.KindNote && e.Op == "masking" {
			note = e.Text == "masking in effect for role monitor: dob=mask name=null subject_id=mask unknown=mask"
		}
		if e.Kind == event.KindNote && e.Op == "masking_refused" {
			refused++
		}
		if e.Kind == event.KindPGError && e.Op == "42501" {
			errs++
		}
	}
	if !note {
		t.Errorf("recording lacks the masking note:\n%s", all)
	}
	// The evidence lists the columns as the client got them: dob, a
	// masked date, retyped as text.
	if rs := kinds(rec.Snapshot(), event.KindPGResult); len(rs) == 0 || strings.Join(rs[0].Args, ",") != "25:subject_id,25:dob,25:name,25:site,25:note" {
		t.Errorf("result columns %v", rs)
	}
	// The role's sample: at most 2 rows per statement, as masked.
	var sample []string
	for _, e := range rec.Snapshot() {
		if e.Kind == event.KindPGRow && len(sample) < 2 {
			sample = append(sample, strings.Join(e.Args, "|"))
		}
	}
	if len(sample) != 2 || sample[0] != `S-****|1980-**-**|\N|Leeds|ok` || sample[1] != `S-****|1980-**-**|\N|Leeds|S-****` {
		t.Errorf("sample %q", sample)
	}
	if n := len(kinds(rec.Snapshot(), event.KindPGRow)); n > 2*8 {
		t.Errorf("%d sample rows recorded", n)
	}
	if refused != 2 || errs != 2 {
		t.Errorf("recorded %d refusals and %d 42501 errors, want 2 each", refused, errs)
	}
}

func TestMaskPassRoleSeesValues(t *testing.T) {
	s := maskStack(t, "k1")
	out, err := s.runPsql(t, "alice", s.roleToken("alice", "rw"), testTarget, "require",
		"SELECT subject_id, name FROM subjects ORDER BY dob LIMIT 1;\nCOPY (SELECT subject_id FROM subjects ORDER BY 1 LIMIT 1) TO STDOUT;\n", "-A")
	if err != nil || !strings.Contains(out, "S-1001|Ada Lovelace 1") || !strings.Contains(out, "\nS-1001\n") {
		t.Fatalf("a role without masking must see the values (%v):\n%s", err, out)
	}
}

func TestMaskPgxExtendedProtocol(t *testing.T) {
	s := maskStack(t, "k1")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := s.connect(t, "alice", s.roleToken("alice", "monitor"))
	const q = `SELECT subject_id, dob, name, site, visit FROM subjects JOIN visits USING (subject_id) WHERE site = $1 ORDER BY visit`
	// Twice: the second run reuses pgx's cached statement description
	// (Bind and Execute, no Describe). Then with the binary format for
	// every column, and in the exec modes that describe differently.
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheStatement,
		pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec} {
		rows, err := conn.Query(ctx, q, mode, "Leeds")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			var sid, dob string
			var name *string
			var site string
			var visit int32
			if err := rows.Scan(&sid, &dob, &name, &site, &visit); err != nil {
				t.Fatalf("%v: scan: %v", mode, err)
			}
			if sid != "S-****" || dob != "1980-**-**" || name != nil || site != "Leeds" || visit != int32(n+1) {
				t.Fatalf("%v: row %q %q %v %q %d", mode, sid, dob, name, site, visit)
			}
			n++
		}
		if rows.Err() != nil || n != 3 {
			t.Fatalf("%v: %d rows, %v", mode, n, rows.Err())
		}
	}
	// Binary results asked for every column: dob (a date, retyped as
	// text) is masked by its ISO text, a float (no exact text) becomes
	// NULL, text columns are masked as text, the rest passes.
	pc := conn.PgConn()
	rr := pc.ExecParams(ctx, `SELECT subject_id, dob, site, length(name)::float8 AS f, visit FROM subjects JOIN visits USING (subject_id) ORDER BY dob LIMIT 1`,
		nil, nil, nil, []int16{1})
	got := readResult(t, rr)
	if len(got.rows) != 1 || string(got.rows[0][0]) != "S-****" || string(got.rows[0][1]) != "1980-**-**" || string(got.rows[0][2]) != "Leeds" ||
		got.rows[0][3] != nil || !bytes.Equal(got.rows[0][4], []byte{0, 0, 0, 1}) {
		t.Fatalf("binary: %q", got.rows)
	}
	if strings.Join(got.cols, ",") != "25:subject_id,25:dob,25:site,25:f,23:visit" {
		t.Fatalf("binary columns: %v", got.cols)
	}
	// A COPY over the extended protocol is refused too; the session goes on.
	_, err := pc.CopyTo(ctx, &bytes.Buffer{}, "COPY subjects TO STDOUT")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" {
		t.Fatalf("COPY TO STDOUT: %v", err)
	}
	var site string
	if err := conn.QueryRow(ctx, "SELECT site FROM subjects LIMIT 1").Scan(&site); err != nil || site != "Leeds" {
		t.Fatalf("after the refused COPY: %q %v", site, err)
	}
	conn.Close(ctx)
	s.waitNoSessions(t)
	noSubjectIDs(t, "the recording", dump(s.rec.Last(t).Snapshot()))
}

func TestMaskHashStableAcrossSessions(t *testing.T) {
	s := maskStack(t, "k1")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hashes := func(q string) []string {
		conn := s.connect(t, "alice", s.roleToken("alice", "analyst"))
		defer conn.Close(ctx)
		rows, err := conn.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		vs, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return vs
	}
	// unknown: pass, yet a table column the catalog cannot see (created
	// in the client's open transaction) is masked, not passed.
	conn := s.connect(t, "alice", s.roleToken("alice", "analyst"))
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "CREATE TABLE copied AS SELECT subject_id AS x FROM subjects"); err != nil {
		t.Fatal(err)
	}
	var x, up string
	if err := tx.QueryRow(ctx, "SELECT x, lower(x) FROM copied ORDER BY x LIMIT 1").Scan(&x, &up); err != nil || x != "*-****" || up != "s-1001" {
		t.Fatalf("uncommitted copy under unknown: pass: %q %q %v", x, up, err)
	}
	tx.Rollback(ctx)
	conn.Close(ctx)

	a := hashes("SELECT subject_id FROM subjects ORDER BY dob")
	b := hashes("SELECT subject_id FROM visits ORDER BY visit")
	noSubjectIDs(t, "hashes", strings.Join(a, " "))
	if len(a) != 3 || a[0] == a[1] || !strings.HasPrefix(a[0], "h:") {
		t.Fatalf("hashes %q", a)
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("the same subject hashes differently in another session and table: %q vs %q", a, b)
		}
	}
	// Another broker key gives other hashes.
	s2 := maskStack(t, "k2")
	conn = s2.connect(t, "alice", s2.roleToken("alice", "analyst"))
	var h string
	if err := conn.QueryRow(ctx, "SELECT subject_id FROM subjects ORDER BY dob LIMIT 1").Scan(&h); err != nil || h == a[0] {
		t.Fatalf("hash under another key: %q (%v)", h, err)
	}
}

// TestMaskRefusedWithoutDictionary: a masked role is never relayed
// unmasked because the proxy lacks its dictionary.
func TestMaskRefusedWithoutDictionary(t *testing.T) {
	s := newStack(t, func(tg *config.Target, o *Options) {
		tg.Roles = append(tg.Roles, config.Role{Name: "monitor", Masking: map[string]string{"unknown": "mask"}})
	})
	out, err := s.runPsql(t, "alice", s.roleToken("alice", "monitor"), testTarget, "require", "SELECT 1;\n")
	if err == nil || !strings.Contains(out, "masking for role monitor is not available") {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	_ = broker.Grant{}
}

// TestMaskPipelineAfterError: results after a pipeline error still get
// their own columns' rules (the target skips to Sync; so must the proxy).
func TestMaskPipelineAfterError(t *testing.T) {
	s := maskStack(t, "k1")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := s.connect(t, "alice", s.roleToken("alice", "monitor"))
	b := &pgx.Batch{}
	b.Queue("SELECT site FROM subjects ORDER BY dob LIMIT 1")
	b.Queue("SELECT 1/0")
	b.Queue("SELECT subject_id FROM subjects ORDER BY dob LIMIT 1")
	if err := conn.SendBatch(ctx, b).Close(); err == nil {
		t.Fatal("division by zero not reported")
	}
	b = &pgx.Batch{}
	var site, sid, site2 string
	b.Queue("SELECT site FROM subjects ORDER BY dob LIMIT 1").QueryRow(func(r pgx.Row) error { return r.Scan(&site) })
	b.Queue("SELECT subject_id FROM subjects ORDER BY dob LIMIT 1").QueryRow(func(r pgx.Row) error { return r.Scan(&sid) })
	b.Queue("SELECT site FROM subjects ORDER BY dob LIMIT 1").QueryRow(func(r pgx.Row) error { return r.Scan(&site2) })
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	if site != "Leeds" || sid != "S-****" || site2 != "Leeds" {
		t.Fatalf("after the failed pipeline: %q %q %q", site, sid, site2)
	}
	// A cursor fetched in steps: rows come from Execute with a row limit
	// and from FETCH.
	out, err := s.runPsql(t, "alice", s.roleToken("alice", "monitor"), testTarget, "require",
		"BEGIN;\nDECLARE c CURSOR FOR SELECT subject_id, site FROM subjects;\nFETCH 2 FROM c;\nFETCH ALL FROM c;\nCOMMIT;\n\\set FETCH_COUNT 1\nSELECT subject_id, note FROM subjects;\n", "-A")
	if err != nil {
		t.Fatal(err)
	}
	noSubjectIDs(t, "psql cursor output", out)
	if strings.Count(out, "S-****|Leeds") != 3 || !strings.Contains(out, "S-****|S-****") {
		t.Fatalf("cursor output:\n%s", out)
	}
}

// TestMaskUnmaskRole: the unmask variant of monitor sees subject IDs in
// clear, everything else as monitor does, and the recording says so.
func TestMaskUnmaskRole(t *testing.T) {
	s := maskStack(t, "k1")
	out, err := s.runPsql(t, "alice", s.roleToken("alice", "monitor-unmask"), testTarget, "require",
		"SELECT subject_id, dob, name FROM subjects ORDER BY dob LIMIT 1;\nCOPY subjects TO STDOUT;\n", "-A")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "S-1001|1980-**-**|\n") || !strings.Contains(out, "COPY TO STDOUT is refused for role monitor-unmask") {
		t.Fatalf("unmask output:\n%s", out)
	}
	s.waitNoSessions(t)
	var unmask string
	for _, e := range s.rec.Last(t).Snapshot() {
		if e.Kind == event.KindNote && e.Op == "unmask" {
			unmask = e.Text
		}
	}
	if !strings.HasPrefix(unmask, "unmask in effect for subject_id (role monitor-unmask, the unmasked variant of monitor, until ") {
		t.Fatalf("unmask note %q", unmask)
	}
	// The audit log says who saw which fields unmasked.
	starts := s.audit.Find("session.start")
	if len(starts) != 1 || fmt.Sprint(starts[0].Details["unmasked"]) != "[subject_id]" ||
		fmt.Sprint(starts[0].Details["masking"]) != "map[dob:mask name:null subject_id:pass]" {
		t.Fatalf("session.start audit: %+v", starts)
	}
}

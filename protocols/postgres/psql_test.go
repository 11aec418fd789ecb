package pgproxy

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-pam/custos/protocols/lifecycle/lifecycletest"
	"github.com/custos-pam/custos/recorder/event"
)

// statement is one recorded simple query with what the target answered.
type statement struct {
	query  string
	tags   []event.Event // pg_complete
	errors []event.Event
	copies []event.Event
	tx     []string
}

// statements groups a recording's events by simple Query.
func statements(evs []event.Event) []statement {
	var out []statement
	for _, e := range evs {
		if e.Kind == event.KindPGQuery {
			out = append(out, statement{query: e.Text})
			continue
		}
		if len(out) == 0 {
			continue
		}
		st := &out[len(out)-1]
		switch e.Kind {
		case event.KindPGComplete:
			st.tags = append(st.tags, e)
		case event.KindPGError:
			st.errors = append(st.errors, e)
		case event.KindPGCopy:
			st.copies = append(st.copies, e)
		case event.KindPGTx:
			st.tx = append(st.tx, e.Op)
		}
	}
	return out
}

const psqlScript = `CREATE TABLE items (id int PRIMARY KEY, name text, qty int);
INSERT INTO items VALUES (1, 'apple', 3), (2, 'pear', 5), (3, 'fig', 7);
UPDATE items SET qty = qty + 1 WHERE id <= 2;
DELETE FROM items WHERE id = 3;
SELECT count(*) AS n FROM items \; SELECT sum(qty) AS total FROM items;
\copy items FROM stdin
10	plum	1
11	kiwi	2
12	lime	3
\.
\copy items TO stdout
BEGIN;
INSERT INTO items VALUES (20, 'doomed', 1);
SELECT 1/0;
ROLLBACK;
SELECT 'rows: ' || count(*) FROM items;
`

func TestPsqlSessionIsRelayedAndRecorded(t *testing.T) {
	s := newStack(t)
	tok, g := s.token("alice")
	out, err := s.runPsql(t, "alice", tok, testTarget, "require", psqlScript, "-t", "-A")
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	for _, want := range []string{
		"2\n10", // count, then sum (4 + 6) of the multi-statement query
		"1\tapple\t4\n2\tpear\t6\n10\tplum\t1\n11\tkiwi\t2\n12\tlime\t3\n", // \copy to stdout
		"ERROR:  division by zero",
		"rows: 5",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("psql output lacks %q:\n%s", want, out)
		}
	}

	rec := s.rec.Last(t)
	evs := rec.WaitClosed(t)
	h := rec.Header
	if h.User != "alice" || h.Target != testTarget || h.GrantID != g.ID || h.Protocol != "postgres" ||
		h.Database != s.db || h.Account != s.role || h.Policy.Parameters != "record" {
		t.Errorf("header = %+v", h)
	}
	sts := statements(evs)
	type want struct {
		prefix string
		tags   []string
		rows   []int64
		tx     []string
	}
	wants := []want{
		{"CREATE TABLE items", []string{"CREATE TABLE"}, []int64{0}, nil},
		{"INSERT INTO items VALUES (1", []string{"INSERT 0 3"}, []int64{3}, nil},
		{"UPDATE items", []string{"UPDATE 2"}, []int64{2}, nil},
		{"DELETE FROM items", []string{"DELETE 1"}, []int64{1}, nil},
		{"SELECT count(*) AS n FROM items ; SELECT sum(qty)", []string{"SELECT 1", "SELECT 1"}, []int64{1, 1}, nil},
		{"COPY  items FROM STDIN", []string{"COPY 3"}, []int64{3}, nil},
		{"COPY  items TO STDOUT", []string{"COPY 5"}, []int64{5}, nil},
		{"BEGIN", []string{"BEGIN"}, []int64{0}, []string{"begin"}},
		{"INSERT INTO items VALUES (20", []string{"INSERT 0 1"}, []int64{1}, nil},
		{"SELECT 1/0", nil, nil, []string{"failed"}},
		{"ROLLBACK", []string{"ROLLBACK"}, []int64{0}, []string{"rollback"}},
		{"SELECT 'rows: '", []string{"SELECT 1"}, []int64{1}, nil},
	}
	if len(sts) != len(wants) {
		t.Fatalf("recorded %d statements, want %d:\n%s", len(sts), len(wants), dump(evs))
	}
	for i, w := range wants {
		st := sts[i]
		if !strings.HasPrefix(st.query, w.prefix) {
			t.Errorf("statement %d = %q, want prefix %q", i, st.query, w.prefix)
			continue
		}
		if len(st.tags) != len(w.tags) {
			t.Errorf("%q: tags %v, want %v", w.prefix, st.tags, w.tags)
			continue
		}
		for j := range w.tags {
			if st.tags[j].Text != w.tags[j] || st.tags[j].N != w.rows[j] {
				t.Errorf("%q: tag %q rows %d, want %q rows %d", w.prefix, st.tags[j].Text, st.tags[j].N, w.tags[j], w.rows[j])
			}
		}
		if strings.Join(st.tx, ",") != strings.Join(w.tx, ",") {
			t.Errorf("%q: transaction events %v, want %v", w.prefix, st.tx, w.tx)
		}
	}
	// The error mid-transaction.
	if e := sts[9].errors; len(e) != 1 || e[0].Op != "22012" || e[0].Name != "ERROR" || e[0].Text != "division by zero" {
		t.Errorf("SELECT 1/0 errors = %+v", e)
	}
	// COPY in: 3 columns, text; 30 bytes of rows plus the "\.\n" end
	// marker psql sends as data. COPY out: 49 bytes.
	checkCopy(t, sts[5].copies, "in", 33)
	checkCopy(t, sts[6].copies, "out", 49)

	end := evs[len(evs)-1]
	if end.Kind != event.KindEnd || end.Op != "closed" {
		t.Errorf("last event = %+v, want a closed end", end)
	}
	if n := kinds(evs, event.KindNote); len(n) == 0 || n[len(n)-1].Op != "disconnect" || n[len(n)-1].Text != "client sent Terminate" {
		t.Errorf("disconnect note = %+v", n)
	}
	if got := s.audit.Wait(t, "session.start", "success", 1); len(got) != 1 {
		t.Errorf("connect audit records = %d, want 1", len(got))
	}
	if got := s.audit.Wait(t, "session.end", "success", 1); len(got) != 1 {
		t.Errorf("disconnect audit records = %d, want 1", len(got))
	}
}

func checkCopy(t *testing.T, copies []event.Event, dir string, bytes int64) {
	t.Helper()
	if len(copies) != 2 {
		t.Fatalf("COPY %s events = %+v, want start and done", dir, copies)
	}
	if copies[0].Op != dir || copies[0].Text != "text" || copies[0].N != 3 {
		t.Errorf("COPY %s start = %+v, want op %s, text format, 3 columns", dir, copies[0], dir)
	}
	if copies[1].Op != "done" || copies[1].Text != dir || copies[1].N != bytes {
		t.Errorf("COPY %s done = %+v, want %d bytes", dir, copies[1], bytes)
	}
}

func TestPsqlCtrlCCancelsTheRightQuery(t *testing.T) {
	s := newStack(t)
	tok, _ := s.token("alice")
	// A second, idle session of the same user must not be affected.
	other := s.connect(t, "alice", mustToken(s, "alice"))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.psql, "-X", "-d", s.conninfo("alice", testTarget, "require"), "-c", "SELECT pg_sleep(60)")
	cmd.Env = append(cleanPGEnv(), "PGPASSWORD="+tok)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var rec *lifecycletest.Recording
	deadline := time.Now().Add(20 * time.Second)
	for rec == nil && time.Now().Before(deadline) {
		for _, r := range s.rec.All() {
			for _, q := range kinds(r.Snapshot(), event.KindPGQuery) {
				if strings.Contains(q.Text, "pg_sleep(60)") {
					rec = r
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if rec == nil {
		t.Fatalf("pg_sleep never reached the recording; psql said: %s", out.String())
	}
	time.Sleep(200 * time.Millisecond) // let the target start sleeping
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("psql took %v to return after Ctrl-C", took)
	}
	if err == nil || !strings.Contains(out.String(), "canceling statement due to user request") {
		t.Fatalf("psql after Ctrl-C: err=%v output:\n%s\nrecorded:\n%s", err, out.String(), dump(rec.WaitClosed(t)))
	}
	evs := rec.WaitClosed(t)
	if notes := kinds(evs, event.KindNote); len(notes) == 0 || notes[0].Op != "cancel" {
		t.Errorf("no cancel note recorded:\n%s", dump(evs))
	}
	if errs := kinds(evs, event.KindPGError); len(errs) != 1 || errs[0].Op != "57014" {
		t.Errorf("errors = %+v, want one 57014 (query_canceled)", errs)
	}
	var one int
	if err := other.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Errorf("the other session was disturbed: %v", err)
	}
}

func mustToken(s *stack, user string) string {
	tok, _ := s.token(user)
	return tok
}

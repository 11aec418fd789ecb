package pgproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/recorder/event"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestPgxBinaryParametersBatchCopyNotify(t *testing.T) {
	s := newStack(t)
	tok, _ := s.token("alice")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	cfg, err := pgx.ParseConfig(s.conninfo("alice", testTarget, "require") + " password=" + tok)
	if err != nil {
		t.Fatal(err)
	}
	notices := make(chan string, 4)
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices <- n.Message }
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if conn.PgConn().ParameterStatus("server_version") == "" || conn.PgConn().ParameterStatus("integer_datetimes") != "on" {
		t.Errorf("ParameterStatus not passed through: server_version=%q", conn.PgConn().ParameterStatus("server_version"))
	}

	if _, err := conn.Exec(ctx, `CREATE TABLE things (id int8 PRIMARY KEY, name text, blob bytea, at timestamptz, price numeric, tags text[])`); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)
	blob := []byte{0, 1, 2, 0xff, 0xfe}
	if _, err := conn.Exec(ctx, `INSERT INTO things VALUES ($1, $2, $3, $4, $5, $6)`,
		int64(42), "widget", blob, at, "12.50", []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	var (
		name  string
		gotB  []byte
		gotAt time.Time
		price string
		tags  []string
	)
	if err := conn.QueryRow(ctx, `SELECT name, blob, at, price::text, tags FROM things WHERE id = $1`, int64(42)).
		Scan(&name, &gotB, &gotAt, &price, &tags); err != nil {
		t.Fatal(err)
	}
	if name != "widget" || !bytes.Equal(gotB, blob) || !gotAt.Equal(at) || price != "12.50" || strings.Join(tags, ",") != "a,b" {
		t.Errorf("round trip: %q %x %v %q %v", name, gotB, gotAt, price, tags)
	}

	// Batch: 50 inserts and a count, pipelined in one round trip.
	batch := &pgx.Batch{}
	for i := 100; i < 150; i++ {
		batch.Queue(`INSERT INTO things (id, name, blob) VALUES ($1, $2, $3)`, int64(i), fmt.Sprintf("n%d", i), []byte{byte(i)})
	}
	batch.Queue(`SELECT count(*) FROM things`)
	br := conn.SendBatch(ctx, batch)
	for i := 0; i < 50; i++ {
		if ct, err := br.Exec(); err != nil || ct.RowsAffected() != 1 {
			t.Fatalf("batch insert %d: %v %v", i, ct, err)
		}
	}
	var n int64
	if err := br.QueryRow().Scan(&n); err != nil || n != 51 {
		t.Fatalf("batch count = %d, %v", n, err)
	}
	if err := br.Close(); err != nil {
		t.Fatal(err)
	}

	// Binary COPY.
	rows := make([][]any, 1000)
	for i := range rows {
		rows[i] = []any{int64(1000 + i), "copied", []byte("x")}
	}
	copied, err := conn.CopyFrom(ctx, pgx.Identifier{"things"}, []string{"id", "name", "blob"}, pgx.CopyFromRows(rows))
	if err != nil || copied != 1000 {
		t.Fatalf("CopyFrom = %d, %v", copied, err)
	}

	// Notices and notifications.
	if _, err := conn.Exec(ctx, `DO $$ BEGIN RAISE NOTICE 'hello from the target'; END $$`); err != nil {
		t.Fatal(err)
	}
	select {
	case msg := <-notices:
		if msg != "hello from the target" {
			t.Errorf("notice = %q", msg)
		}
	case <-time.After(5 * time.Second):
		t.Error("notice not relayed")
	}
	if _, err := conn.Exec(ctx, `LISTEN things_changed`); err != nil {
		t.Fatal(err)
	}
	other := s.connect(t, "alice", tok)
	if _, err := other.Exec(ctx, `SELECT pg_notify('things_changed', 'id=42')`); err != nil {
		t.Fatal(err)
	}
	nctx, ncancel := context.WithTimeout(ctx, 5*time.Second)
	note, err := conn.WaitForNotification(nctx)
	ncancel()
	if err != nil || note.Channel != "things_changed" || note.Payload != "id=42" {
		t.Errorf("notification = %+v, %v", note, err)
	}

	// A cancel request with the broker's key pair cancels the running query.
	errc := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, `SELECT pg_sleep(30)`)
		errc <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if err := conn.PgConn().CancelRequest(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "57014" {
			t.Errorf("pg_sleep after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancel request did not cancel pg_sleep")
	}
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}

	evs := s.rec.All()[0].WaitClosed(t)
	var insert event.Event
	for _, b := range kinds(evs, event.KindPGBind) {
		if b.N == 6 {
			insert = b
		}
	}
	want := []string{`\x000000000000002a`, "widget", `\x000102fffe`}
	if len(insert.Args) != 6 || strings.Join(insert.Args[:3], "|") != strings.Join(want, "|") {
		t.Errorf("INSERT bind args = %q, want binary int8 and bytea as hex, text as is: %q...", insert.Args, want)
	}
	if got := len(kinds(evs, event.KindPGExecute)); got < 53 {
		t.Errorf("executes = %d, want at least 53 (3 + 50 batched)", got)
	}
	inserts := 0
	for _, c := range kinds(evs, event.KindPGComplete) {
		if c.Text == "INSERT 0 1" {
			inserts++
		}
	}
	if inserts != 51 {
		t.Errorf("INSERT 0 1 tags = %d, want 51", inserts)
	}
	var copyIn, copyDone bool
	for _, c := range kinds(evs, event.KindPGCopy) {
		copyIn = copyIn || (c.Op == "in" && c.Text == "binary" && c.N == 3)
		copyDone = copyDone || (c.Op == "done" && c.Text == "in" && c.N > 1000*10)
	}
	if !copyIn || !copyDone {
		t.Errorf("binary COPY not recorded:\n%s", dump(kinds(evs, event.KindPGCopy)))
	}
	tagFound := false
	for _, c := range kinds(evs, event.KindPGComplete) {
		tagFound = tagFound || (c.Text == "COPY 1000" && c.N == 1000)
	}
	if !tagFound {
		t.Error("COPY 1000 tag not recorded")
	}
}

func TestParameterRedaction(t *testing.T) {
	tests := []struct {
		policy string
		check  func(args []string) bool
	}{
		{"record", func(a []string) bool { return len(a) == 2 && a[0] == "s3cret-value" && a[1] == nullArg }},
		{"hash", func(a []string) bool {
			return len(a) == 2 && strings.HasPrefix(a[0], "hmac-sha256:") && len(a[0]) == len("hmac-sha256:")+64 &&
				!strings.Contains(a[0], "s3cret") && a[1] == nullArg
		}},
		{"omit", func(a []string) bool { return a == nil }},
	}
	for _, tt := range tests {
		t.Run(tt.policy, func(t *testing.T) {
			s := newStack(t, func(tg *config.Target, _ *Options) { tg.Postgres.Parameters = tt.policy })
			tok, _ := s.token("alice")
			conn := s.connect(t, "alice", tok)
			ctx := context.Background()
			var got *string
			if err := conn.QueryRow(ctx, `SELECT $1::text || coalesce($2::text, '')`, "s3cret-value", nil).Scan(&got); err != nil {
				t.Fatal(err)
			}
			conn.Close(ctx)
			evs := s.rec.Last(t).WaitClosed(t)
			if s.rec.Last(t).Header.Policy.Parameters != tt.policy {
				t.Errorf("header policy = %q", s.rec.Last(t).Header.Policy.Parameters)
			}
			var bind *event.Event
			for i, e := range evs {
				if e.Kind == event.KindPGBind && e.N == 2 {
					bind = &evs[i]
				}
			}
			if bind == nil || !tt.check(bind.Args) {
				t.Fatalf("bind = %+v", bind)
			}
			for _, e := range evs {
				for _, a := range e.Args {
					if tt.policy != "record" && strings.Contains(a, "s3cret") {
						t.Errorf("parameter leaked into %v event", e.Kind)
					}
				}
			}
		})
	}
}

func TestRecordResultsWithCaps(t *testing.T) {
	s := newStack(t, func(tg *config.Target, _ *Options) {
		tg.Postgres.RecordResults = true
		tg.Postgres.ResultRowsCap = 3
	})
	tok, _ := s.token("alice")
	out, err := s.runPsql(t, "alice", tok, testTarget, "require", "SELECT g, 'row ' || g FROM generate_series(1, 10) g;\nSELECT NULL::text AS n;\n", "-t", "-A")
	if err != nil || !strings.Contains(out, "10|row 10") {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	evs := s.rec.Last(t).WaitClosed(t)
	rows := kinds(evs, event.KindPGRow)
	if len(rows) != 4 || strings.Join(rows[0].Args, "|") != "1|row 1" || strings.Join(rows[2].Args, "|") != "3|row 3" ||
		len(rows[3].Args) != 1 || rows[3].Args[0] != nullArg {
		t.Fatalf("rows = %s", dump(rows))
	}
	capped := false
	for _, n := range kinds(evs, event.KindNote) {
		capped = capped || (n.Op == "results_capped" && n.N == 7)
	}
	if !capped {
		t.Errorf("no results_capped note for the 7 rows beyond the cap:\n%s", dump(evs))
	}
}

func TestPsqlLargeObjectsUseFunctionCalls(t *testing.T) {
	s := newStack(t)
	tok, _ := s.token("alice")
	dir := t.TempDir()
	in, outPath := filepath.Join(dir, "in.bin"), filepath.Join(dir, "out.bin")
	payload := bytes.Repeat([]byte("custos large object "), 500)
	if err := os.WriteFile(in, payload, 0o600); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("\\lo_import '%s'\n\\set oid :LASTOID\n\\lo_export :oid '%s'\n\\lo_unlink :oid\n", in, outPath)
	out, err := s.runPsql(t, "alice", tok, testTarget, "require", script)
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	got, err := os.ReadFile(outPath)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("large object round trip through the proxy failed: %v (%d bytes)", err, len(got))
	}
	calls := 0
	for _, e := range kinds(s.rec.Last(t).WaitClosed(t), event.KindPGQuery) {
		if e.Op == "function_call" {
			calls++
		}
	}
	if calls < 4 {
		t.Errorf("recorded %d fast-path function calls, want lo_creat/lo_open/lowrite/lo_close and more", calls)
	}
}

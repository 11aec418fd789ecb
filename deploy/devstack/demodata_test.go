package devstack

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/protocols/postgres/masking"
)

// TestDemoMasking: the demo data loads twice without error, and the demo
// config's data dictionary classifies its columns as `make up` promises:
// role monitor hashes subject IDs in both tables, masks dates of birth,
// withholds names and allocation and passes the rest; monitor-unmask
// sees subject IDs in clear.
func TestDemoMasking(t *testing.T) {
	pg := StartPostgres(t)
	for range 2 {
		if err := loadDemoData(pg); err != nil {
			t.Fatal(err)
		}
	}
	tmpl := filepath.Join("..", "dev", "custos.yaml")
	b, err := os.ReadFile(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	env := map[string]string{}
	os.Expand(string(b), func(k string) string {
		env[k] = "x"
		if strings.HasSuffix(k, "_PORT") {
			env[k] = "1234"
		}
		return ""
	})
	env["CUSTOS_SLACK_ENABLED"] = "false"
	env["CUSTOS_DEV_DIR"] = dir
	env["CUSTOS_STORE"] = "{driver: sqlite, path: " + filepath.Join(dir, "custos.db") + "}"
	out := filepath.Join(dir, "custos.yaml")
	if err := renderConfig(tmpl, out, env); err != nil {
		t.Fatal(err)
	}
	rendered, _ := os.ReadFile(out)
	cfg, err := config.Parse(rendered)
	if err != nil {
		t.Fatal(err)
	}
	dict, err := masking.Compile(cfg.DataDictionary, []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	tg, _ := cfg.FindTarget("demo-pg")
	policy := func(role string) *masking.Policy {
		r, ok := tg.FindRole(role)
		if !ok {
			t.Fatalf("no role %s on demo-pg", role)
		}
		rules, _ := tg.MaskingRules(r)
		p, err := dict.Policy(rules)
		if err != nil || p == nil {
			t.Fatalf("%s: %v", role, err)
		}
		return p
	}
	monitor, unmask := policy("monitor"), policy("monitor-unmask")

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `select c.relname, a.attname from pg_attribute a join pg_class c on c.oid = a.attrelid
		where c.relname in ('subjects', 'visits') and c.relkind = 'r' and a.attnum > 0 order by 1, a.attnum`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for rows.Next() {
		var rel, col string
		if err := rows.Scan(&rel, &col); err != nil {
			t.Fatal(err)
		}
		c := &masking.Column{Schema: "public", Table: rel, Name: col}
		got[rel+"."+col] = monitor.Field(c, 25, masking.Text).Action.String() + "/" + unmask.Field(c, 25, masking.Text).Action.String()
	}
	want := map[string]string{
		"subjects.subject_id": "hash/pass", "subjects.dob": "mask/mask", "subjects.name": "null/null",
		"subjects.site": "pass/pass", "subjects.allocation": "null/null",
		"visits.subject_id": "hash/pass", "visits.visit": "pass/pass", "visits.visited_on": "pass/pass",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("columns %v", got)
	}
}

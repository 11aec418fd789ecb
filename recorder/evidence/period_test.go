package evidence_test

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/store/postgres"
	"github.com/custos-pam/custos/broker/store/sqlite"
	"github.com/custos-pam/custos/deploy/devstack"
	"github.com/custos-pam/custos/recorder/evidence"
	"github.com/custos-pam/custos/recorder/evidence/evidencetest"
)

func TestMain(m *testing.M) { os.Exit(devstack.Main(m)) }

func sqliteStore(t testing.TB) broker.Store {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func postgresStore(t testing.TB) broker.Store {
	pg := devstack.StartPostgres(t)
	st, err := postgres.Open(t.Context(), pg.DSN(pg.CreateDatabase(t, "evidence")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// schema compiles docs/evidence.schema.json.
func schema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	s, err := c.Compile(filepath.Join("..", "..", "docs", "evidence.schema.json"))
	if err != nil {
		t.Fatalf("docs/evidence.schema.json: %v", err)
	}
	return s
}

// ValidateBundle checks a bundle ZIP: every file listed in SHA256SUMS,
// evidence.json valid against the schema, a page for every session.
func validateBundle(t testing.TB, zb []byte) (map[string][]byte, evidence.Bundle) {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(zb), int64(len(zb)))
	if err != nil {
		t.Fatalf("bundle is not a zip: %v", err)
	}
	files := map[string][]byte{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		files[f.Name], _ = io.ReadAll(rc)
		rc.Close()
	}
	for _, name := range []string{"index.html", "evidence.json", "README.txt", "SHA256SUMS"} {
		if _, ok := files[name]; !ok {
			t.Fatalf("bundle lacks %s", name)
		}
	}
	if n := strings.Count(string(files["SHA256SUMS"]), "\n"); n != len(files)-1 {
		t.Errorf("SHA256SUMS lists %d files, the zip holds %d others", n, len(files)-1)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(files["evidence.json"]))
	if err != nil {
		t.Fatal(err)
	}
	if err := schema(t).Validate(inst); err != nil {
		t.Fatalf("evidence.json does not validate against docs/evidence.schema.json: %v", err)
	}
	var b evidence.Bundle
	if err := json.Unmarshal(files["evidence.json"], &b); err != nil {
		t.Fatal(err)
	}
	for _, s := range b.Sessions {
		if _, ok := files[evidence.SessionPage(s.ID)]; !ok {
			t.Errorf("no page for session %s", s.ID)
		}
		if !strings.Contains(string(files["index.html"]), `href="`+evidence.SessionPage(s.ID)+`"`) {
			t.Errorf("index.html does not link session %s", s.ID)
		}
	}
	return files, b
}

// TestPeriodBundle: a seeded month of one target gives a bundle with that
// target's grants, requests with approvals and their signature meaning,
// sessions with their commands and last verdicts (a failed one shown as
// failed), break-glass events, an empty reviews section and a verified
// audit segment; another target's sessions stay out; the JSON validates
// against the schema and the HTML holds no external reference.
func TestPeriodBundle(t *testing.T) {
	st := sqliteStore(t)
	m := evidencetest.Seed(t, st, evidencetest.Options{Sessions: 120, Other: 30, Tampered: []int{7}})
	var zb bytes.Buffer
	b, err := evidence.BuildPeriod(t.Context(), evidence.PeriodInput{Target: m.Target, From: m.From, To: m.To, Store: st,
		By: "sam", Now: time.Now()}, &zb)
	if err != nil {
		t.Fatal(err)
	}
	files, got := validateBundle(t, zb.Bytes())
	if len(got.Sessions) != 120 || len(b.Sessions) != 120 {
		t.Fatalf("sessions: %d, want 120 (another target's left out)", len(got.Sessions))
	}
	for _, s := range got.Sessions {
		if s.Target != m.Target {
			t.Errorf("session %s of target %s in the bundle", s.ID, s.Target)
		}
	}
	if len(got.Grants) != 12 || len(got.Requests) != 12 || len(got.Approvals) != 12 {
		t.Errorf("grants %d, requests %d, approvals %d; want 12 each", len(got.Grants), len(got.Requests), len(got.Approvals))
	}
	if a := got.Approvals[0]; a.By == "" || a.Signature["meaning"] != "approved: access is justified" || a.AuditSeq == 0 {
		t.Errorf("approval %+v: want its approver and signature meaning from the audit record", a)
	}
	s7 := got.Sessions[7]
	if s7.Verify.Source != "recorded" || s7.Verify.Intact == nil || *s7.Verify.Intact || got.Summary.SessionsFailing != 1 {
		t.Errorf("tampered session verdict %+v, failing %d", s7.Verify, got.Summary.SessionsFailing)
	}
	if len(s7.Commands) != 3 || !strings.Contains(string(files[evidence.SessionPage(s7.ID)]), "UPDATE orders SET status") {
		t.Errorf("session commands %q not in its page", s7.Commands)
	}
	if !strings.Contains(string(files[evidence.SessionPage(s7.ID)]), "FAILED") {
		t.Error("the failed verdict is not on the session page")
	}
	if len(got.BreakGlass) != 2 || got.Reviews == nil || len(got.Reviews) != 0 {
		t.Errorf("breakglass %d (want 2), reviews %v (want empty)", len(got.BreakGlass), got.Reviews)
	}
	if !got.Audit.Segment.OK || !got.Audit.Log.OK || got.Audit.FirstSeq != 1 || len(got.Audit.Links) != got.Audit.Segment.Records {
		t.Errorf("audit segment %+v, log ok %v", got.Audit.Segment, got.Audit.Log.OK)
	}
	for _, r := range got.Audit.Records {
		if r.ComputeHash() != r.Hash {
			t.Fatalf("record %d in the bundle does not hash to its hash", r.Seq)
		}
		if strings.Contains(string(r.Details), "quiet-ssh") || r.Target == "quiet-ssh" {
			t.Fatalf("record %d of another target in the bundle", r.Seq)
		}
	}
	idx := string(files["index.html"])
	for _, bad := range []string{"http://", "https://", "<script", "src="} {
		if strings.Contains(idx, bad) {
			t.Errorf("index.html holds %q: it must open offline with no external asset", bad)
		}
	}
}

// TestPeriodBundleEmptyPeriod: a period with nothing in it still gives a
// valid bundle.
func TestPeriodBundleEmptyPeriod(t *testing.T) {
	st := sqliteStore(t)
	m := evidencetest.Seed(t, st, evidencetest.Options{Sessions: 5})
	var zb bytes.Buffer
	if _, err := evidence.BuildPeriod(t.Context(), evidence.PeriodInput{Target: m.Target, From: m.To.AddDate(1, 0, 0),
		To: m.To.AddDate(1, 1, 0), Store: st, By: "sam"}, &zb); err != nil {
		t.Fatal(err)
	}
	_, got := validateBundle(t, zb.Bytes())
	if len(got.Sessions) != 0 || !got.Audit.Segment.OK {
		t.Errorf("empty period: %d sessions, segment %+v", len(got.Sessions), got.Audit.Segment)
	}
}

// TestBusyMonth builds a month of 3000 sessions on one target from each
// store and logs how long it took (docs/evidence.md quotes the figure).
// It asserts the content, not the time.
func TestBusyMonth(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds thousands of sessions")
	}
	for name, open := range map[string]func(testing.TB) broker.Store{"sqlite": sqliteStore, "postgres": postgresStore} {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			began := time.Now()
			m := evidencetest.Seed(t, st, evidencetest.Options{Sessions: 3000})
			t.Logf("%s: seeded %d sessions in %v", name, len(m.Sessions), time.Since(began).Round(time.Millisecond))
			began = time.Now()
			var zb bytes.Buffer
			b, err := evidence.BuildPeriod(t.Context(), evidence.PeriodInput{Target: m.Target, From: m.From, To: m.To,
				Store: st, By: "sam"}, &zb)
			if err != nil {
				t.Fatal(err)
			}
			took := time.Since(began)
			t.Logf("%s: bundle of %d sessions, %d audit records, %d bytes built in %v", name, len(b.Sessions),
				len(b.Audit.Links), zb.Len(), took.Round(time.Millisecond))
			_, got := validateBundle(t, zb.Bytes())
			if len(got.Sessions) != 3000 || got.Summary.RecordedIntact != 3000 || !got.Audit.Segment.OK {
				t.Errorf("bundle: %d sessions, %d intact, segment %+v", len(got.Sessions), got.Summary.RecordedIntact, got.Audit.Segment)
			}
		})
	}
}

// BenchmarkPeriodBundle measures a month of 3000 sessions from SQLite.
func BenchmarkPeriodBundle(b *testing.B) {
	st := sqliteStore(b)
	m := evidencetest.Seed(b, st, evidencetest.Options{Sessions: 3000})
	b.ResetTimer()
	for b.Loop() {
		if _, err := evidence.BuildPeriod(b.Context(), evidence.PeriodInput{Target: m.Target, From: m.From, To: m.To,
			Store: st, By: "sam"}, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// TestPeriodBundleInterleaved: a record stamped outside the period (a
// replica's clock, a late writer) between records of the period is
// linked and checked but not listed, and records after it still count.
func TestPeriodBundleInterleaved(t *testing.T) {
	st := sqliteStore(t)
	m := evidencetest.Seed(t, st, evidencetest.Options{Sessions: 10})
	err := st.Update(t.Context(), func(tx broker.Tx) error {
		if _, err := tx.AppendAudit(broker.AuditRecord{Actor: "system", Action: "grant.expire", Target: m.Target, Outcome: "success"}); err != nil {
			return err
		}
		_, err := tx.AppendAudit(broker.AuditRecord{Time: m.From.Add(72 * time.Hour), Actor: "frank", Action: "breakglass.reveal",
			Target: "pg-admin", Outcome: "success", Details: []byte(`{"target":"` + m.Target + `"}`)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var zb bytes.Buffer
	if _, err := evidence.BuildPeriod(t.Context(), evidence.PeriodInput{Target: m.Target, From: m.From, To: m.To, Store: st}, &zb); err != nil {
		t.Fatal(err)
	}
	_, got := validateBundle(t, zb.Bytes())
	if len(got.BreakGlass) != 3 || !got.Audit.Segment.OK || got.Audit.Links[len(got.Audit.Links)-1].Seq != got.Audit.LastSeq {
		t.Errorf("breakglass %d (want 3), segment %+v", len(got.BreakGlass), got.Audit.Segment)
	}
	for _, r := range got.Audit.Records {
		if r.Action == "grant.expire" {
			t.Error("a record stamped outside the period is listed")
		}
	}
}

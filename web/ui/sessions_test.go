package webui_test

import (
	"archive/zip"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/web/ui/uitest"
)

type row struct {
	ID         string `json:"id"`
	User       string `json:"user"`
	Protocol   string `json:"protocol"`
	State      string `json:"state"`
	DurationMS int64  `json:"duration_ms"`
	Bytes      int64  `json:"bytes"`
	Statements int64  `json:"statements"`
	Verify     struct {
		Status string `json:"status"`
	} `json:"verify"`
}

func ids(rows []row) map[string]bool {
	m := map[string]bool{}
	for _, r := range rows {
		m[r.ID] = true
	}
	return m
}

// TestRequesterCannotOpenAnotherUsersRecording: 403 on every way in
// (metadata, verify, evidence, replay websocket), each refusal audited, no
// read of the recording; approvers of the grant and security may.
func TestRequesterCannotOpenAnotherUsersRecording(t *testing.T) {
	t.Parallel()
	env := uitest.Start(t)
	f := env.Seed(t, 0)
	alice := login(t, env, "alice")
	readsBefore := len(env.AuditRecords(t, "session.recording.read"))

	for _, p := range []string{"/api/v1/sessions/" + f.DaveSSH, "/api/v1/sessions/" + f.DaveSSH + "/verify",
		"/api/v1/sessions/" + f.DaveSSH + "/evidence"} {
		if st, b, _ := alice.raw("GET", p, nil, nil); st != http.StatusForbidden {
			t.Fatalf("%s: %d %s", p, st, b)
		}
	}
	conn, res, err := alice.ws("/ws/replay?session="+f.DaveSSH, env.URL)
	if err == nil {
		conn.Close()
		t.Fatal("replay websocket of another user's session was opened")
	}
	if res == nil || res.StatusCode != http.StatusForbidden {
		t.Fatalf("replay websocket: %v %v", res, err)
	}
	var denied int
	for _, r := range env.AuditRecords(t, "session.recording.read") {
		var d map[string]any
		_ = json.Unmarshal(r.Details, &d)
		if r.Outcome == broker.OutcomeDenied && r.Actor == "alice" && d["session_id"] == f.DaveSSH {
			denied++
		}
		if r.Outcome == broker.OutcomeSuccess && d["session_id"] == f.DaveSSH {
			t.Fatalf("dave's recording was read: %+v", r)
		}
	}
	if denied != 4 {
		t.Fatalf("want 4 audited refusals, got %d", denied)
	}
	if n := len(env.AuditRecords(t, "session.recording.read")); n != readsBefore+4 {
		t.Fatalf("audit records of reads: %d, want %d", n, readsBefore+4)
	}

	// The list shows alice her own sessions only.
	var rows []row
	alice.do("GET", "/api/v1/sessions", nil, &rows)
	if got := ids(rows); !got[f.SSH] || !got[f.PG] || got[f.DaveSSH] {
		t.Fatalf("alice's list: %v", got)
	}
	// carol approved dave's grant: she sees and may open his session; bob
	// approved alice's and does not see dave's.
	carol, bob, sam := login(t, env, "carol"), login(t, env, "bob"), login(t, env, "sam")
	if st := carol.do("GET", "/api/v1/sessions/"+f.DaveSSH, nil, nil); st != http.StatusOK {
		t.Fatalf("approver carol: %d", st)
	}
	carol.do("GET", "/api/v1/sessions", nil, &rows)
	if got := ids(rows); !got[f.DaveSSH] || got[f.SSH] {
		t.Fatalf("carol's list: %v", got)
	}
	if st := bob.do("GET", "/api/v1/sessions/"+f.DaveSSH, nil, nil); st != http.StatusForbidden {
		t.Fatalf("bob on dave's session: %d", st)
	}
	sam.do("GET", "/api/v1/sessions", nil, &rows)
	if got := ids(rows); !got[f.SSH] || !got[f.DaveSSH] || !got[f.PG] {
		t.Fatalf("security sees all: %v", got)
	}
}

func TestSessionTableFiltersAndColumns(t *testing.T) {
	t.Parallel()
	env := uitest.Start(t)
	f := env.Seed(t, 0)
	sam := login(t, env, "sam")
	for _, tt := range []struct {
		query string
		want  []string
	}{
		{"q=cat+notes.html", []string{f.SSH, f.DaveSSH}},
		{"q=uname", []string{f.SSH, f.DaveSSH}},
		{"q=patients", []string{f.PG}},
		{"q=%2Ftmp%2Freport.csv", []string{f.SSH, f.DaveSSH}},
		{"protocol=postgres", []string{f.PG}},
		{"user=dave", []string{f.DaveSSH}},
		{"target=demo-pg", []string{f.PG}},
		{"state=closed&protocol=ssh", []string{f.SSH, f.DaveSSH}},
		{"since=" + time.Now().Add(time.Hour).UTC().Format("2006-01-02T15:04"), nil},
		{"until=" + time.Now().Add(-time.Hour).UTC().Format("2006-01-02T15:04"), nil},
	} {
		t.Run(tt.query, func(t *testing.T) {
			var rows []row
			if st := sam.do("GET", "/api/v1/sessions?"+tt.query, nil, &rows); st != http.StatusOK {
				t.Fatalf("status %d", st)
			}
			got := ids(rows)
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for _, w := range tt.want {
				if !got[w] {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			}
		})
	}
	// Columns: duration, bytes, statements and a verify status that the
	// background check settles.
	deadline := time.Now().Add(20 * time.Second)
	for {
		var rows []row
		sam.do("GET", "/api/v1/sessions?user=alice", nil, &rows)
		settled := true
		for _, r := range rows {
			if r.Verify.Status == "pending" {
				settled = false
			}
			if r.Verify.Status == "failed" || r.DurationMS <= 0 || r.Bytes <= 0 {
				t.Fatalf("row %+v", r)
			}
			if r.Protocol == "postgres" && r.Statements != 5 {
				t.Fatalf("pg statements: %+v", r)
			}
		}
		if settled {
			for _, r := range rows {
				if r.Verify.Status != "intact" {
					t.Fatalf("verify status %+v", r)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("verify status stayed pending")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestEvidenceBundle(t *testing.T) {
	t.Parallel()
	env := uitest.Start(t)
	f := env.Seed(t, 0)
	sam := login(t, env, "sam")
	st, body, hdr := sam.raw("GET", "/api/v1/sessions/"+f.SSH+"/evidence", nil, nil)
	if st != http.StatusOK || hdr.Get("Content-Type") != "application/zip" || !strings.Contains(hdr.Get("Content-Disposition"), "attachment") {
		t.Fatalf("evidence: %d %v", st, hdr)
	}
	zr, err := zip.NewReader(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, zf := range zr.File {
		rc, _ := zf.Open()
		files[zf.Name], _ = io.ReadAll(rc)
		rc.Close()
	}
	sess, _ := envSession(t, env, f.SSH)
	sum := sha256.Sum256(files["manifest.json"])
	if hex.EncodeToString(sum[:]) != sess.ManifestHash {
		t.Fatal("manifest.json is not the stored, audited manifest")
	}
	var rep struct {
		Intact   bool   `json:"intact"`
		SignedBy string `json:"signed_by"`
		Chunks   int    `json:"chunks"`
	}
	if err := json.Unmarshal(files["verify-report.json"], &rep); err != nil || !rep.Intact || rep.SignedBy == "" || rep.Chunks == 0 {
		t.Fatalf("verify report: %s", files["verify-report.json"])
	}
	actions := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(files["audit-records.jsonl"]))
	for sc.Scan() {
		var r broker.AuditRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if r.ComputeHash() != r.Hash {
			t.Fatalf("record %d does not hash to its hash", r.Seq)
		}
		actions[r.Action] = true
	}
	for _, a := range []string{"request.create", "request.approve", "grant.create", "session.recorded", "session.evidence.export"} {
		if !actions[a] {
			t.Errorf("bundle lacks %s records: %v", a, actions)
		}
	}
	if actions["session.recorded"] && len(files["grant.json"]) == 0 || len(files["request.json"]) == 0 {
		t.Error("bundle lacks grant.json or request.json")
	}
	// SHA256SUMS covers every file.
	for _, line := range strings.Split(strings.TrimSpace(string(files["SHA256SUMS"])), "\n") {
		parts := strings.Fields(line)
		s := sha256.Sum256(files[parts[1]])
		if hex.EncodeToString(s[:]) != parts[0] {
			t.Errorf("SHA256SUMS: %s does not match", parts[1])
		}
	}
	if len(zr.File) != len(strings.Split(strings.TrimSpace(string(files["SHA256SUMS"])), "\n"))+1 {
		t.Error("SHA256SUMS does not list every file")
	}
}

func envSession(t *testing.T, env *uitest.Env, id string) (broker.Session, error) {
	var s broker.Session
	err := env.State.View(t.Context(), func(tx broker.Tx) error {
		var err error
		s, err = tx.GetSession(id)
		return err
	})
	return s, err
}

func TestAuditSavedViews(t *testing.T) {
	t.Parallel()
	env := uitest.Start(t)
	f := env.Seed(t, 0)
	sam, alice := login(t, env, "sam"), login(t, env, "alice")
	if st := alice.do("GET", "/api/v1/audit/views/grants-for-target?target=demo-ssh", nil, nil); st != http.StatusForbidden {
		t.Fatalf("requester on audit views: %d", st)
	}
	// A recording read and a refused one, for the access view.
	sam.do("GET", "/api/v1/sessions/"+f.SSH+"/evidence", nil, nil)
	alice.do("GET", "/api/v1/sessions/"+f.DaveSSH, nil, nil)

	type tbl struct {
		Columns []string   `json:"columns"`
		Rows    [][]string `json:"rows"`
	}
	view := func(q string) tbl {
		t.Helper()
		var out tbl
		if st := sam.do("GET", "/api/v1/audit/views/"+q, nil, &out); st != http.StatusOK {
			t.Fatalf("%s: %d", q, st)
		}
		return out
	}
	has := func(tb tbl, want ...string) bool {
		for _, r := range tb.Rows {
			line := strings.Join(r, "|")
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(line, w)
			}
			if ok {
				return true
			}
		}
		return false
	}
	if g := view("grants-for-target?target=demo-ssh"); !has(g, f.Grant.ID, "alice", "bob") || !has(g, f.DaveGrant.ID, "carol") || has(g, "demo-pg") {
		t.Fatalf("grants for demo-ssh: %v", g.Rows)
	}
	at := time.Now().UTC().Format(time.RFC3339)
	if a := view("access-at?target=demo-ssh&at=" + at); !has(a, "alice", f.Grant.ID) || !has(a, "dave") {
		t.Fatalf("access at now: %v", a.Rows)
	}
	if a := view("access-at?target=demo-ssh&at=2001-01-01T00:00"); len(a.Rows) != 0 {
		t.Fatalf("access in 2001: %v", a.Rows)
	}
	if a := view("approvals-by?person=carol"); !has(a, "request.approve", "carol") || has(a, "bob") {
		t.Fatalf("approvals by carol: %v", a.Rows)
	}
	if a := view("recording-access"); !has(a, "session.evidence.export", "sam", f.SSH) || !has(a, "session.recording.read", "alice", "denied", f.DaveSSH) {
		t.Fatalf("recording access: %v", a.Rows)
	}
	if st := sam.do("GET", "/api/v1/audit/views/access-at?target=demo-ssh", nil, nil); st != http.StatusBadRequest {
		t.Fatalf("missing parameter: %d", st)
	}
	// CSV export: same rows, formula-safe cells, as a download, audited.
	st, body, hdr := sam.raw("GET", "/api/v1/audit/views/grants-for-target?target=demo-ssh&format=csv", nil, nil)
	if st != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "text/csv") || !strings.Contains(hdr.Get("Content-Disposition"), "attachment") {
		t.Fatalf("csv: %d %v", st, hdr)
	}
	recs, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil || len(recs) != 3 || recs[0][0] != "grant_id" {
		t.Fatalf("csv: %v %v", recs, err)
	}
	if len(env.AuditRecords(t, "audit.export")) != 1 {
		t.Fatal("export not audited")
	}
}

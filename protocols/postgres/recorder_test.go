package pgproxy

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/store/sqlite"
	"github.com/custos-pam/custos/protocols/lifecycle"
	"github.com/custos-pam/custos/recorder"
	"github.com/custos-pam/custos/recorder/event"
	"github.com/custos-pam/custos/recorder/keywrap"
	"github.com/custos-pam/custos/recorder/manifest"
	"github.com/custos-pam/custos/recorder/store/localdir"
)

// writerRecorder is the one-line adapter the broker uses: the recorder's
// Writer is a lifecycle.Recording.
type writerRecorder struct{ *recorder.Recorder }

func (r writerRecorder) Start(ctx context.Context, h event.Header) (lifecycle.Recording, error) {
	w, err := r.Recorder.Start(ctx, h)
	if err != nil {
		return nil, err
	}
	return w, nil
}

var _ lifecycle.Recording = (*recorder.Writer)(nil)

// realRecorder is the recorder package writing encrypted, signed
// recordings to a local directory, with a SQLite audit log.
func realRecorder(tb testing.TB) *recorder.Recorder {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	state, err := sqlite.Open(ctx, filepath.Join(dir, "state.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { state.Close() })
	signer, err := manifest.LoadSigner(filepath.Join(dir, "keys", "signing.key"))
	if err != nil {
		tb.Fatal(err)
	}
	keys, err := keywrap.LoadLocal(filepath.Join(dir, "keys", "wrap.key"))
	if err != nil {
		tb.Fatal(err)
	}
	st, err := localdir.New(filepath.Join(dir, "recordings"))
	if err != nil {
		tb.Fatal(err)
	}
	r, err := recorder.New(ctx, recorder.Config{
		SpoolDir: filepath.Join(dir, "spool"), Store: st, Signer: signer, Keys: keys,
		Audit: audit.NewLog(state), Index: broker.SessionIndex{Store: state},
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

func withRecorder(r *recorder.Recorder) stackOption {
	return func(_ *config.Target, o *Options) { o.Recorder = writerRecorder{r} }
}

func TestSessionStoredByTheRecorder(t *testing.T) {
	rec := realRecorder(t)
	s := newStack(t, withRecorder(rec))
	tok, g := s.token("alice")
	script := "CREATE TABLE notes (id int, body text);\nINSERT INTO notes VALUES (1, 'a'), (2, 'b');\nSELECT count(*) FROM notes;\n"
	if out, err := s.runPsql(t, "alice", tok, testTarget, "require", script); err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.waitNoSessions(t)
	if err := rec.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	id := s.creds.calls[0] // the session ID credentials were issued for
	opened, err := rec.Open(ctx, id, recorder.Access{Actor: "sec", Purpose: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if h := opened.Header(); h.GrantID != g.ID || h.Protocol != "postgres" || h.Account != s.role {
		t.Errorf("header = %+v", h)
	}
	var evs []event.Event
	for e, err := range opened.Events(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
	}
	var got []string
	for _, st := range statements(evs) {
		tags := ""
		for _, c := range st.tags {
			tags += c.Text
		}
		got = append(got, st.query+" => "+tags)
	}
	want := []string{
		"CREATE TABLE notes (id int, body text); => CREATE TABLE",
		"INSERT INTO notes VALUES (1, 'a'), (2, 'b'); => INSERT 0 2",
		"SELECT count(*) FROM notes; => SELECT 1",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stored statements:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if first, last := evs[0], evs[len(evs)-1]; first.Kind != event.KindStart || last.Kind != event.KindEnd || last.Op != "closed" {
		t.Errorf("recording runs from %v to %v %q", first.Kind, last.Kind, last.Op)
	}
}

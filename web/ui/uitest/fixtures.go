package uitest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/recorder"
	"github.com/custos-pam/custos/recorder/event"
)

// XSSOutput is terminal output that would run script if it were ever
// treated as HTML, with OSC 8 hyperlinks (one to a javascript: URL).
const XSSOutput = "<script>window.__xss=1</script>\r\n" +
	"<img src=x onerror=\"window.__xss=2\">\r\n" +
	"\x1b]8;;javascript:window.__xss=3\x1b\\click-me-link\x1b]8;;\x1b\\ and \x1b]8;;https://example.invalid/\x1b\\docs-link\x1b]8;;\x1b\\\r\n"

// XSSSQL is SQL whose text is markup.
const XSSSQL = "UPDATE trials SET note = '<script>window.__xss=4</script>' WHERE id = 7"

func header(g broker.Grant, id, protocol string) event.Header {
	return event.Header{SessionID: id, GrantID: g.ID, User: g.User, Target: g.Target, Role: g.Role,
		Protocol: protocol, ClientAddr: "127.0.0.1:50123", StartedAt: time.Now().UTC(),
		Policy: event.Policy{Approvers: g.Approvers, Reason: g.Reason, Ticket: g.Ticket, GrantEndsAt: g.EndsAt}}
}

// SSHSession records a short interactive SSH session through the recorder:
// a shell whose output holds the XSS probe, an exec channel and an SFTP
// upload.
func (e *Env) SSHSession(tb testing.TB, g broker.Grant, id string) {
	tb.Helper()
	w, err := e.Recorder.Start(context.Background(), header(g, id, "ssh"))
	if err != nil {
		tb.Fatal(err)
	}
	step := func(err error) {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	step(w.Record(event.Event{Kind: event.KindSSHChannel, Channel: 1, Op: "session"}))
	step(w.Record(event.Event{Kind: event.KindSSHRequest, Channel: 1, Op: "pty-req", Name: "xterm-256color", Cols: 80, Rows: 24}))
	step(w.Record(event.Event{Kind: event.KindSSHRequest, Channel: 1, Op: "shell"}))
	step(w.Output(1, []byte("Welcome to demo-ssh\r\n\x1b[1;32m"+g.User+"@demo\x1b[0m:~$ ")))
	for _, c := range "cat notes.html" {
		step(w.Input(1, []byte(string(c))))
		step(w.Output(1, []byte(string(c))))
	}
	step(w.Input(1, []byte("\r")))
	step(w.Output(1, []byte("\r\n"+XSSOutput+"\x1b[1;32m"+g.User+"@demo\x1b[0m:~$ ")))
	step(w.Record(event.Event{Kind: event.KindSSHChannel, Channel: 2, Op: "session"}))
	step(w.Record(event.Event{Kind: event.KindSSHRequest, Channel: 2, Op: "exec", Text: "uname -a"}))
	step(w.Output(2, []byte("Linux demo 6.1.0 x86_64 GNU/Linux\n")))
	step(w.Record(event.Event{Kind: event.KindSSHChannel, Channel: 3, Op: "session"}))
	step(w.Record(event.Event{Kind: event.KindSSHRequest, Channel: 3, Op: "subsystem", Text: "sftp"}))
	step(w.Record(event.Event{Kind: event.KindFile, Channel: 3, Op: "write", Text: "/tmp/report.csv", N: 2048, Name: "ok"}))
	step(w.Output(1, []byte("exit\r\nlogout\r\n")))
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
}

// PGSession records a short PostgreSQL session: a transaction with an
// extended-protocol query with a parameter, a failing statement whose SQL
// is markup, and a rollback.
func (e *Env) PGSession(tb testing.TB, g broker.Grant, id string) {
	tb.Helper()
	h := header(g, id, "postgres")
	h.Database = "clinical"
	h.Policy.Parameters = "record"
	w, err := e.Recorder.Start(context.Background(), h)
	if err != nil {
		tb.Fatal(err)
	}
	for _, ev := range []event.Event{
		{Kind: event.KindNote, Op: "masking", Text: "masking in effect for role monitor: dob=mask subject_id=hash unknown=mask"},
		{Kind: event.KindPGQuery, Text: "BEGIN"},
		{Kind: event.KindPGComplete, Text: "BEGIN"},
		{Kind: event.KindPGTx, Op: "begin"},
		{Kind: event.KindPGParse, Name: "s1", Text: "SELECT id, site FROM patients WHERE id = $1"},
		{Kind: event.KindPGBind, Name: "p1", Text: "s1", Args: []string{"42"}, N: 1},
		{Kind: event.KindPGExecute, Name: "p1"},
		{Kind: event.KindPGResult, Op: "rows", Args: []string{"23:id", "25:site"}, N: 1, Bytes: 16,
			Text: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
		{Kind: event.KindPGRow, Args: []string{"h:3b0d1c6d3f0b3b6d3e1f4b1a", "Leeds"}},
		{Kind: event.KindPGComplete, Text: "SELECT 1", N: 1},
		{Kind: event.KindPGQuery, Text: XSSSQL},
		{Kind: event.KindPGError, Op: "42P01", Name: "ERROR", Text: `relation "trials" does not exist`},
		{Kind: event.KindPGTx, Op: "failed"},
		{Kind: event.KindPGQuery, Text: "ROLLBACK"},
		{Kind: event.KindPGComplete, Text: "ROLLBACK"},
		{Kind: event.KindPGTx, Op: "rollback"},
		{Kind: event.KindPGQuery, Text: "SELECT count(*) FROM visits"},
		{Kind: event.KindPGComplete, Text: "SELECT 1", N: 1},
	} {
		if err := w.Record(ev); err != nil {
			tb.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
}

// LongTick is the output printed at second s of the long session: the
// line a screen shows last after a seek to s (for even s).
func LongTick(s int) string { return fmt.Sprintf("tick %07d", s) }

// LongSession generates a terminal session of length d (an hour or more)
// with output every two seconds, a full-screen program on the alternate
// screen from 50:00 to 51:00, and an exec and a file upload at 30:00. It
// is written with Synth, started d+1h ago.
func (e *Env) LongSession(tb testing.TB, g broker.Grant, id string, d time.Duration) {
	tb.Helper()
	h := header(g, id, "ssh")
	h.StartedAt = time.Now().Add(-d - time.Hour).UTC()
	sec := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	evs := []event.Event{
		{Kind: event.KindSSHChannel, Channel: 1, Op: "session", Offset: sec(0.1)},
		{Kind: event.KindSSHRequest, Channel: 1, Op: "pty-req", Name: "xterm", Cols: 80, Rows: 24, Offset: sec(0.1)},
		{Kind: event.KindOutput, Channel: 1, Data: []byte("long session\r\n$ "), Offset: sec(0.2)},
	}
	total := int(d / time.Second)
	for s := 2; s < total; s += 2 {
		off := sec(float64(s))
		switch {
		case s == 3000:
			evs = append(evs, event.Event{Kind: event.KindOutput, Channel: 1, Offset: off,
				Data: []byte("top\r\n\x1b[?1049h\x1b[H\x1b[2J")})
		case s > 3000 && s < 3060:
			var b strings.Builder
			fmt.Fprintf(&b, "\x1b[H\x1b[7mtop - %s load average: 0.%02d\x1b[0m\x1b[K\r\n", LongTick(s), s%100)
			for i := 0; i < 20; i++ {
				fmt.Fprintf(&b, "%5d alice  20 0 %6d %5.1f  proc-%d\x1b[K\r\n", 1000+i, s*7+i, float64((s+i)%100)/10, i)
			}
			evs = append(evs, event.Event{Kind: event.KindOutput, Channel: 1, Offset: off, Data: []byte(b.String())})
		case s == 3060:
			evs = append(evs, event.Event{Kind: event.KindOutput, Channel: 1, Offset: off,
				Data: []byte("\x1b[?1049l" + LongTick(s) + " (top exited)\r\n$ ")})
		default:
			var b strings.Builder
			fmt.Fprintf(&b, "ls -l /srv/run-%d\r\n", s)
			for i := 0; i < 3; i++ {
				fmt.Fprintf(&b, "-rw-r--r-- 1 alice alice %6d Nov 23 12:%02d data-%07d-%d.csv\r\n", s*13+i, s/60%60, s, i)
			}
			if s%60 == 0 {
				fmt.Fprintf(&b, "\x1b[1;33m== minute %d ==\x1b[0m\r\n", s/60)
			}
			fmt.Fprintf(&b, "%s\r\n$ ", LongTick(s))
			evs = append(evs, event.Event{Kind: event.KindOutput, Channel: 1, Offset: off, Data: []byte(b.String())})
			if s == 1800 {
				evs = append(evs,
					event.Event{Kind: event.KindSSHRequest, Channel: 2, Op: "exec", Text: "scp -t /srv/upload/results.csv", Offset: off},
					event.Event{Kind: event.KindFile, Channel: 2, Op: "scp-upload", Text: "/srv/upload/results.csv", N: 4096, Offset: off})
			}
		}
	}
	if _, err := e.Synth.Write(context.Background(), h, evs, d, "ls -l /srv\nscp -t /srv/upload/results.csv\ntop"); err != nil {
		tb.Fatalf("uitest: long session: %v", err)
	}
}

// Live is a running session fed by the test.
type Live struct {
	ID  string
	w   *recorder.Writer
	env *Env
}

// StartLive starts a recorded terminal session that stays open, watchable
// through the hub and terminable through the env's Terminator.
func (e *Env) StartLive(tb testing.TB, g broker.Grant, id string) *Live {
	tb.Helper()
	w, err := e.Recorder.Start(context.Background(), header(g, id, "ssh"))
	if err != nil {
		tb.Fatal(err)
	}
	e.Term.add(id, w)
	for _, ev := range []event.Event{
		{Kind: event.KindSSHChannel, Channel: 1, Op: "session"},
		{Kind: event.KindSSHRequest, Channel: 1, Op: "pty-req", Name: "xterm", Cols: 80, Rows: 24},
	} {
		if err := w.Record(ev); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Output(1, []byte("live session on demo-ssh\r\n$ ")); err != nil {
		tb.Fatal(err)
	}
	return &Live{ID: id, w: w, env: e}
}

// Type records keystrokes and their echo, as a shell would show them; a
// carriage return ends the line with a new prompt.
func (l *Live) Type(s string) error {
	for _, c := range s {
		if err := l.w.Input(1, []byte(string(c))); err != nil {
			return err
		}
		out := string(c)
		if c == '\r' {
			out = "\r\n$ "
		}
		if err := l.w.Output(1, []byte(out)); err != nil {
			return err
		}
	}
	return nil
}

// Close ends the live session normally.
func (l *Live) Close() error { return l.w.Close() }

// Fixtures names what Seed created.
type Fixtures struct {
	// Pending is alice's request waiting for bob or carol.
	Pending broker.Request
	// Grant is alice's approved grant (approved by bob), DaveGrant dave's
	// (approved by carol).
	Grant, DaveGrant broker.Grant
	// SSH, PG and Long are alice's recorded sessions; DaveSSH is dave's.
	SSH, PG, Long, DaveSSH string
}

// Seed creates the usual data: grants, a pending request, alice's SSH,
// PostgreSQL and long sessions, and dave's SSH session. long is the long
// session's length (0: none).
func (e *Env) Seed(tb testing.TB, long time.Duration) Fixtures {
	tb.Helper()
	f := Fixtures{SSH: "ses_ssh_alice", PG: "ses_pg_alice", Long: "ses_long_alice", DaveSSH: "ses_ssh_dave"}
	f.Grant = e.Grant(tb, "alice", "demo-ssh", "ops", "bob")
	f.DaveGrant = e.Grant(tb, "dave", "demo-ssh", "ops", "carol")
	pg := e.Grant(tb, "alice", "demo-pg", "readonly", "bob")
	e.SSHSession(tb, f.Grant, f.SSH)
	e.SSHSession(tb, f.DaveGrant, f.DaveSSH)
	e.PGSession(tb, pg, f.PG)
	if long > 0 {
		e.LongSession(tb, f.Grant, f.Long, long)
	}
	e.Drain(tb)
	req, err := e.Access.Create(context.Background(), "alice", access.NewRequest{Target: "demo-ssh", Role: "ops",
		Duration: time.Hour, Reason: "INC-777 disk full on demo-ssh", Ticket: "INC-777"})
	if err != nil {
		tb.Fatalf("uitest: pending request: %v", err)
	}
	f.Pending = req
	return f
}

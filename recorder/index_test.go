package recorder

import (
	"strings"
	"testing"

	"github.com/custos-pam/custos/recorder/event"
)

func TestScreenLineRender(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "$ ls -la", "$ ls -la"},
		{"backspace echo", "$ lx\b \bs", "$ ls"},
		{"carriage return overwrites", "abc\rX", "Xbc"},
		{"erase to end", "$ long\x1b[4D\x1b[Kls", "$ ls"},
		{"cursor right", "ab\x1b[2Cc", "ab  c"},
		{"colors dropped", "\x1b[01;32malice\x1b[00m:~$ id", "alice:~$ id"},
		{"title OSC dropped", "\x1b]0;alice@db: ~\x07$ pwd", "$ pwd"},
		{"delete char", "$ lxs\x1b[2D\x1b[P", "$ ls"},
		{"utf-8", "$ echo café", "$ echo café"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l screenLine
			l.output([]byte(tt.in))
			if got := l.render(); got != tt.want {
				t.Fatalf("render(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestIndexer(t *testing.T) {
	x := newIndexer(event.IndexSQLFull)
	x.observe(&event.Event{Kind: event.KindSSHRequest, Channel: 1, Op: "pty-req"})
	typed := func(in, echo string) {
		x.data(event.KindInput, 1, []byte(in))
		x.data(event.KindOutput, 1, []byte(echo))
	}
	x.data(event.KindOutput, 1, []byte("motd\r\n$ "))
	typed("c", "c")
	typed("d /v", "d /v")
	typed("\t", "ar/")
	typed("\r", "\r\n$ ")
	typed("cat /etc/shadow\r", "cat /etc/shadow\r\nPermission denied\r\n$ ") // pasted line
	typed("su -\r", "su -\r\nPassword: ")
	typed("s3cret\r", "\r\nsu: Authentication failure\r\n$ ")
	typed("\r", "\r\n$ ")
	// No pty: stdin data is not indexed.
	x.data(event.KindInput, 2, []byte("rm -rf /\n"))
	x.observe(&event.Event{Kind: event.KindSSHRequest, Channel: 3, Op: "exec", Text: "systemctl restart app"})
	x.observe(&event.Event{Kind: event.KindPGQuery, Text: "SELECT 1"})
	x.observe(&event.Event{Kind: event.KindPGQuery, Text: "SELECT 1"})
	x.observe(&event.Event{Kind: event.KindPGParse, Text: "UPDATE t SET a = $1"})
	x.observe(&event.Event{Kind: event.KindPGExecute})
	x.observe(&event.Event{Kind: event.KindFile, Op: "rename", Text: "/srv/a", Args: []string{"/srv/b"}})

	st := x.stats()
	for _, want := range []string{"$ cd /var/", "$ cat /etc/shadow", "$ su -", "systemctl restart app", "SELECT 1", "UPDATE t SET a = $1", "/srv/a", "/srv/b"} {
		if !strings.Contains(st.Index, want) {
			t.Errorf("index lacks %q:\n%s", want, st.Index)
		}
	}
	for _, bad := range []string{"s3cret", "rm -rf"} {
		if strings.Contains(st.Index, bad) {
			t.Errorf("index holds %q:\n%s", bad, st.Index)
		}
	}
	if strings.Count(st.Index, "SELECT 1") != 1 {
		t.Errorf("duplicate entries:\n%s", st.Index)
	}
	if st.Statements != 3 {
		t.Errorf("statements = %d, want 3", st.Statements)
	}
}

// TestIndexerSQLPolicy: by default the index holds statements without
// their literals (a password, a patient identifier); "full" keeps them and
// "none" keeps no SQL at all.
func TestIndexerSQLPolicy(t *testing.T) {
	stmts := []string{
		"ALTER ROLE app PASSWORD 'hunter2-secret'",
		"SELECT * FROM subjects WHERE mrn = 'MRN-0042' AND age > 77",
	}
	index := func(policy string) string {
		x := newIndexer(policy)
		x.observe(&event.Event{Kind: event.KindPGQuery, Text: stmts[0]})
		x.observe(&event.Event{Kind: event.KindPGParse, Text: stmts[1]})
		return x.stats().Index
	}
	for _, policy := range []string{"", event.IndexSQLNormalized} {
		got := index(policy)
		for _, want := range []string{"ALTER ROLE app PASSWORD $1", "SELECT * FROM subjects WHERE mrn = $1 AND age > $2"} {
			if !strings.Contains(got, want) {
				t.Errorf("policy %q: index lacks %q:\n%s", policy, want, got)
			}
		}
		for _, secret := range []string{"hunter2", "MRN-0042", "77"} {
			if strings.Contains(got, secret) {
				t.Errorf("policy %q: index holds literal %q:\n%s", policy, secret, got)
			}
		}
	}
	if got := index(event.IndexSQLFull); !strings.Contains(got, "hunter2-secret") || !strings.Contains(got, "MRN-0042") {
		t.Errorf("policy full: index lacks the statements as sent:\n%s", got)
	}
	if got := index(event.IndexSQLNone); got != "" {
		t.Errorf("policy none: index = %q, want empty", got)
	}
}

func TestIndexBounded(t *testing.T) {
	x := newIndexer(event.IndexSQLFull)
	for i := range 100000 {
		x.observe(&event.Event{Kind: event.KindPGQuery, Text: strings.Repeat("x", 100) + string(rune('a'+i%26)) + strings.Repeat("y", i%50)})
	}
	x.observe(&event.Event{Kind: event.KindPGQuery, Text: strings.Repeat("é", maxIndexEntry)})
	if n := len(x.stats().Index); n > maxIndexBytes+maxIndexEntry+1 {
		t.Fatalf("index is %d bytes", n)
	}
}

func TestIndexerStreamBreak(t *testing.T) {
	x := newIndexer("")
	x.observe(&event.Event{Kind: event.KindNote, Channel: 1, Op: "scp", Name: event.FlagStreamBreak, Text: "stream stopped parsing as scp; recorded in full from here"})
	x.observe(&event.Event{Kind: event.KindNote, Op: "cancel", Text: "client sent a cancel request"})
	if got := x.stats().Index; got != event.FlagStreamBreak+" scp" {
		t.Fatalf("index %q", got)
	}
}

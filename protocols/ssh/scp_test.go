package sshproxy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/custos-pam/custos/protocols/lifecycle"
	"github.com/custos-pam/custos/recorder/event"
)

// scpMsg is what one side of an scp conversation sent.
type scpMsg struct {
	client bool
	b      string
}

func cl(b string) scpMsg { return scpMsg{true, b} }
func tg(b string) scpMsg { return scpMsg{false, b} }

// relayRun is what a fileChannel made of a conversation.
type relayRun struct {
	// events are the file events and notes, as text.
	events []string
	// in and out are the bytes recorded from the client and the target.
	in, out string
	// evs are the file events and notes.
	evs []event.Event
}

// runFiles relays a conversation on channel 2 through a fileChannel with
// the observer newObs makes, cutting each message into reads of random
// sizes when rng is set.
func runFiles(t testing.TB, proto string, newObs func(eventSink) fileObserver, digest bool, msgs []scpMsg, rng *rand.Rand) relayRun {
	t.Helper()
	tp, rec := newTestTap()
	f := &fileChannel{rec: tp, ch: 2, proto: proto, obs: newObs(tp), digest: digest}
	for _, m := range msgs {
		b := []byte(m.b)
		for len(b) > 0 {
			n := len(b)
			if rng != nil {
				n = min(len(b), 1+rng.IntN(9))
			}
			var err error
			if m.client {
				err = f.fromClient(b[:n])
			} else {
				err = f.fromTarget(b[:n])
			}
			if err != nil {
				t.Fatal(err)
			}
			b = b[n:]
		}
	}
	if err := f.close(); err != nil {
		t.Fatal(err)
	}
	var r relayRun
	for _, e := range rec.Snapshot() {
		if !e.Kind.Terminal() {
			r.evs = append(r.evs, e)
		}
		switch e.Kind {
		case event.KindInput:
			r.in += string(e.Data)
		case event.KindOutput:
			r.out += string(e.Data)
		case event.KindNote:
			r.events = append(r.events, fmt.Sprintf("note %s %s %s", e.Op, e.Name, strings.Join(e.Args, " ")))
		default:
			r.events = append(r.events, strings.TrimSpace(fmt.Sprintf("%s %s %d %s %s", e.Op, e.Text, e.N, strings.Join(e.Args, " "), e.Name)))
		}
	}
	return r
}

// runSCP relays an scp conversation for a server command line.
func runSCP(t testing.TB, cmd string, digest bool, msgs []scpMsg, rng *rand.Rand) relayRun {
	t.Helper()
	srv, ok := parseSCPServer(cmd)
	if !ok {
		t.Fatalf("%q not recognized as an scp server", cmd)
	}
	return runFiles(t, "scp", func(tp eventSink) fileObserver { return srv.observer(tp, 2, digest) }, digest, msgs, rng)
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return "sha256=" + hex.EncodeToString(h[:])
}

func TestSCPObserver(t *testing.T) {
	tests := []struct {
		name string
		cmd  string
		msgs []scpMsg
		// full and digest are the events under each policy.
		full, digest []string
		// contents are the bytes the digest policy leaves out, each
		// file's separated by |.
		contents string
	}{
		{"upload one file", "scp -t /srv/a.txt",
			[]scpMsg{tg("\x00"), cl("C0644 5 a.txt\n"), tg("\x00"), cl("hello\x00"), tg("\x00")},
			[]string{"write /srv/a.txt 5 mode=0644"},
			[]string{"write /srv/a.txt 5 mode=0644 " + sha("hello")}, "hello"},
		{"upload with times into a directory", "scp -p -d -t -- /srv/in",
			[]scpMsg{tg("\x00"), cl("T1700000000 0 1700000000 0\n"), tg("\x00"), cl("C0600 3 x\n"), tg("\x00"), cl("abc\x00"), tg("\x00"),
				cl("C0644 0 empty\n"), tg("\x00"), cl("\x00"), tg("\x00")},
			[]string{"write /srv/in/x 3 mode=0600", "write /srv/in/empty 0 mode=0644"},
			[]string{"write /srv/in/x 3 mode=0600 " + sha("abc"), "write /srv/in/empty 0 mode=0644 " + sha("")}, "abc"},
		{"recursive upload", "scp -r -t /srv",
			[]scpMsg{tg("\x00"), cl("D0755 0 tree\n"), tg("\x00"), cl("C0644 2 a\n"), tg("\x00"), cl("hi\x00"), tg("\x00"),
				cl("D0700 0 sub\n"), tg("\x00"), cl("C0644 1 b\n"), tg("\x00"), cl("z\x00"), tg("\x00"), cl("E\n"), tg("\x00"), cl("E\n"), tg("\x00")},
			[]string{"mkdir /srv/tree 0 mode=0755", "write /srv/tree/a 2 mode=0644", "mkdir /srv/tree/sub 0 mode=0700", "write /srv/tree/sub/b 1 mode=0644"},
			[]string{"mkdir /srv/tree 0 mode=0755", "write /srv/tree/a 2 mode=0644 " + sha("hi"), "mkdir /srv/tree/sub 0 mode=0700", "write /srv/tree/sub/b 1 mode=0644 " + sha("z")},
			"hi|z"},
		{"upload refused, next file accepted", "scp -d -t /root",
			[]scpMsg{tg("\x00"), cl("C0644 5 x\n"), tg("\x01scp: /root/x: Permission denied\n"), cl("C0644 1 y\n"), tg("\x00"), cl("!\x00"), tg("\x00")},
			[]string{"write /root/x 5 mode=0644", "error scp: /root/x: Permission denied 0", "write /root/y 1 mode=0644"},
			[]string{"error scp: /root/x: Permission denied 0", "write /root/y 1 mode=0644 " + sha("!")}, "!"},
		{"download", "scp -f /srv/big.bin",
			[]scpMsg{cl("\x00"), tg("C0640 10 big.bin\n"), cl("\x00"), tg("0123456789\x00"), cl("\x00")},
			[]string{"read /srv/big.bin 10 mode=0640"},
			[]string{"read /srv/big.bin 10 mode=0640 " + sha("0123456789")}, "0123456789"},
		{"recursive download", "scp -r -f /srv/tree",
			[]scpMsg{cl("\x00"), tg("D0755 0 tree\n"), cl("\x00"), tg("C0644 2 a\n"), cl("\x00"), tg("hi\x00"), cl("\x00"), tg("E\n"), cl("\x00")},
			[]string{"read /srv/tree/a 2 mode=0644"},
			[]string{"read /srv/tree/a 2 mode=0644 " + sha("hi")}, "hi"},
		{"source error", "scp -f /nope",
			[]scpMsg{cl("\x00"), tg("\x01scp: /nope: No such file or directory\n")},
			[]string{"error scp: /nope: No such file or directory 0"},
			[]string{"error scp: /nope: No such file or directory 0"}, ""},
		{"read error after the contents", "scp -f /srv/f",
			[]scpMsg{cl("\x00"), tg("C0644 2 f\n"), cl("\x00"), tg("xy\x01scp: /srv/f: Input/output error\n"), cl("\x00")},
			[]string{"read /srv/f 2 mode=0644", "error scp: /srv/f: Input/output error 0"},
			[]string{"read /srv/f 2 mode=0644 " + sha("xy"), "error scp: /srv/f: Input/output error 0"}, "xy"},
		{"file contents that look like control lines", "scp -t /srv/c",
			[]scpMsg{tg("\x00"), cl("C0644 12 c\n"), tg("\x00"), cl("C0644 1 no\n\n\x00"), tg("\x00")},
			[]string{"write /srv/c 12 mode=0644"},
			[]string{"write /srv/c 12 mode=0644 " + sha("C0644 1 no\n\n")}, "C0644 1 no\n\n"},
		{"channel ends inside the contents", "scp -t /srv/cut",
			[]scpMsg{tg("\x00"), cl("C0644 10 cut\n"), tg("\x00"), cl("abcd")},
			[]string{"write /srv/cut 10 mode=0644"},
			[]string{"write /srv/cut 4 mode=0644 " + sha("abcd") + " incomplete: channel closed during the file's contents"}, "abcd"},

		// A stream that stops being scp is flagged, and recorded in
		// full from there.
		{"a shell instead of the source", "scp -f /x",
			[]scpMsg{cl("\x00"), tg("bash-5.2$ "), cl("id\n"), tg("uid=0(root)\n")},
			[]string{"note scp stream_break from=target offset=0"},
			[]string{"note scp stream_break from=target offset=0"}, ""},
		{"a shell instead of the sink", "scp -t /x",
			[]scpMsg{cl("echo hidden\n"), tg("hidden\n")},
			[]string{"note scp stream_break from=client offset=0"},
			[]string{"note scp stream_break from=client offset=0"}, ""},
		{"stray bytes after a file", "scp -t /srv/x",
			[]scpMsg{tg("\x00"), cl("C0644 5 x\n"), tg("\x00"), cl("hello\x00echo smuggled\n")},
			[]string{"write /srv/x 5 mode=0644", "note scp stream_break from=client offset=16"},
			[]string{"write /srv/x 5 mode=0644 " + sha("hello"), "note scp stream_break from=client offset=16"}, "hello"},
		{"contents before the sink accepted the file", "scp -t /srv/x",
			[]scpMsg{tg("\x00"), cl("C0644 5 x\nhello\x00"), tg("\x00")},
			[]string{"write /srv/x 5 mode=0644", "note scp stream_break from=client offset=10"},
			[]string{"note scp stream_break from=client offset=10"}, ""},
		{"a line before the conversation started", "scp -t /srv/x",
			[]scpMsg{cl("C0644 5 x\n"), tg("\x00")},
			[]string{"note scp stream_break from=client offset=0"},
			[]string{"note scp stream_break from=client offset=0"}, ""},
		{"bad size", "scp -t /srv/x",
			[]scpMsg{tg("\x00"), cl("C0644 -5 x\nhello")},
			[]string{"note scp stream_break from=client offset=10"},
			[]string{"note scp stream_break from=client offset=10"}, ""},
		{"name with a path", "scp -t /srv/x",
			[]scpMsg{tg("\x00"), cl("C0644 5 ../x\n")},
			[]string{"note scp stream_break from=client offset=12"},
			[]string{"note scp stream_break from=client offset=12"}, ""},
		{"E with text", "scp -r -t /srv",
			[]scpMsg{tg("\x00"), cl("E; rm -rf /\n")},
			[]string{"note scp stream_break from=client offset=11"},
			[]string{"note scp stream_break from=client offset=11"}, ""},
		{"sink talks", "scp -t /srv/x",
			[]scpMsg{tg("\x00"), cl("C0644 5 x\n"), tg("ok\n")},
			[]string{"write /srv/x 5 mode=0644", "note scp stream_break from=target offset=1"},
			[]string{"note scp stream_break from=target offset=1"}, ""},
		{"an answer nobody asked for", "scp -t /srv/x",
			[]scpMsg{tg("\x00\x00")},
			[]string{"note scp stream_break from=target offset=1"},
			[]string{"note scp stream_break from=target offset=1"}, ""},
		{"a line that never ends", "scp -f /srv/x",
			[]scpMsg{cl("\x00"), tg("C0644 5 " + strings.Repeat("n", scpMaxLine))},
			[]string{"note scp stream_break from=target offset=8193"},
			[]string{"note scp stream_break from=target offset=8193"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var in, out string
			for _, m := range tc.msgs {
				if m.client {
					in += m.b
				} else {
					out += m.b
				}
			}
			for _, digest := range []bool{false, true} {
				want := tc.full
				if digest {
					want = tc.digest
				}
				got := runSCP(t, tc.cmd, digest, tc.msgs, nil)
				if !slices.Equal(got.events, want) {
					t.Fatalf("digest=%v: events\n%s\nwant\n%s", digest, strings.Join(got.events, "\n"), strings.Join(want, "\n"))
				}
				// Full: every byte. Digest: every byte but the
				// contents of correctly framed files.
				if digest {
					for _, c := range strings.Split(tc.contents, "|") {
						in = strings.Replace(in, c, "", 1)
						out = strings.Replace(out, c, "", 1)
					}
				}
				if got.in != in || got.out != out {
					t.Fatalf("digest=%v: recorded\n%q\n%q\nwant\n%q\n%q", digest, got.in, got.out, in, out)
				}
				for seed := range uint64(20) {
					again := runSCP(t, tc.cmd, digest, tc.msgs, rand.New(rand.NewPCG(seed, 3)))
					if !slices.Equal(again.events, got.events) || again.in != got.in || again.out != got.out {
						t.Fatalf("digest=%v seed %d: read boundaries changed the record: %q", digest, seed, again.events)
					}
				}
			}
		})
	}
}

func TestExecGate(t *testing.T) {
	tests := []struct {
		cmd    string
		scp    bool
		upload bool
		path   string
	}{
		{"scp -t /tmp", true, true, "/tmp"},
		{"scp -v -r -p -d -t -- /srv/in", true, true, "/srv/in"},
		{"scp -rf /srv/tree", true, false, "/srv/tree"},
		{"/usr/bin/scp -r -f -- '/tmp/a b'", true, false, "/tmp/a b"},
		{`scp -f /tmp/a\ b`, true, false, "/tmp/a b"},
		{`scp -f "/tmp/a b"`, true, false, "/tmp/a b"},
		{"scp -f '/tmp/$(id)'", true, false, "/tmp/$(id)"},
		{"scp -f /tmp/*.log", true, false, "/tmp/*.log"},
		{"scp -t -- -dash", true, true, "-dash"},

		// Commands, recorded byte for byte.
		{"scp -f /x; echo hidden; cat /etc/hostname", false, false, ""},
		{"scp -f /x && bash -i", false, false, ""},
		{"scp -f /x || bash -i", false, false, ""},
		{"scp -f /x | bash -i", false, false, ""},
		{"scp -f /x & bash -i", false, false, ""},
		{"scp -f /x\nbash -i", false, false, ""},
		{"scp -f /x\rbash -i", false, false, ""},
		{"scp -t /x < /etc/shadow", false, false, ""},
		{"scp -f /x > /tmp/y", false, false, ""},
		{"scp -f $(bash -i)", false, false, ""},
		{"scp -f `bash -i`", false, false, ""},
		{"scp -f ${HOME}", false, false, ""},
		{`scp -f "$(bash -i)"`, false, false, ""},
		{`scp -f "` + "`id`" + `"`, false, false, ""},
		{`scp -f "\x"`, false, false, ""},
		{`scp -f \x`, false, false, ""},
		{`scp -f /x\`, false, false, ""},
		{"scp -f /x #", false, false, ""},
		{"scp -f (/x)", false, false, ""},
		{"scp -f '/x", false, false, ""},
		{`scp -f "/x`, false, false, ""},
		{"scp -f '/x\n'", false, false, ""},
		{"scp -f /a /b", false, false, ""},
		{"scp -t -f /a", false, false, ""},
		{"scp -f", false, false, ""},
		{"scp -f ''", false, false, ""},
		{"scp -x -f /a", false, false, ""},
		{"scp --help", false, false, ""},
		{"scp -S bash -f /a", false, false, ""},
		{"/tmp/scp -f /a", false, false, ""},
		{"./scp -f /a", false, false, ""},
		{"PATH=/tmp scp -f /a", false, false, ""},
		{"exec scp -f /a", false, false, ""},
		{"rsync --server -logDtpre.iLsfxCIvu . /tmp/x", false, false, ""},
		{"rsync --server 2>/dev/null ; bash -i", false, false, ""},
		{"head -c 1G /dev/zero", false, false, ""},
		{"", false, false, ""},
	}
	for _, tc := range tests {
		srv, ok := parseSCPServer(tc.cmd)
		if ok != tc.scp || ok && (srv.upload != tc.upload || srv.path != tc.path) {
			t.Errorf("%q: %+v %v", tc.cmd, srv, ok)
		}
		c := &sessionChannel{s: &session{Session: &lifecycle.Session{}}}
		if f := c.classifyExec(tc.cmd); (f != nil) != tc.scp {
			t.Errorf("%q: observer %v", tc.cmd, f != nil)
		}
	}
	if srv, _ := parseSCPServer("/usr/bin/scp -r -f -- '/tmp/a b'"); !srv.dirTarget {
		t.Error("-r does not set dirTarget")
	}
}

func TestParseLogin(t *testing.T) {
	tests := []struct {
		in, login, target string
		bad               bool
	}{
		{"web-1", "", "web-1", false},
		{"deploy@web-1", "deploy", "web-1", false},
		{"a@b@web-1", "a@b", "web-1", false},
		{"@web-1", "", "", true},
		{"deploy@", "", "", true},
		{"", "", "", true},
	}
	for _, tc := range tests {
		l, tg, err := parseLogin(tc.in)
		if (err != nil) != tc.bad || l != tc.login || tg != tc.target {
			t.Errorf("%q: %q %q %v", tc.in, l, tg, err)
		}
	}
}

func TestEnvAllowed(t *testing.T) {
	tests := []struct {
		allow []string
		name  string
		ok    bool
	}{
		{nil, "TERM", true},
		{nil, "LANG", true},
		{nil, "LC_ALL", true},
		{nil, "LD_PRELOAD", false},
		{nil, "PATH", false},
		{[]string{"APP_*"}, "APP_MODE", true},
		{[]string{"APP_*"}, "TERM", false},
		{[]string{"EXACT"}, "EXACTLY", false},
	}
	for _, tc := range tests {
		if got := envAllowed(tc.allow, tc.name); got != tc.ok {
			t.Errorf("%v %s: %v", tc.allow, tc.name, got)
		}
	}
}

func FuzzSCPObserver(f *testing.F) {
	f.Add("-r -t /srv", []byte("D0755 0 tree\nC0644 2 a\nhi\x00E\n"), []byte("\x00\x00\x01oops\n"), uint8(3))
	f.Add("-f /srv/x", []byte("\x00\x00"), []byte("C0644 3 x\nabc\x00"), uint8(1))
	f.Add("-t /srv/x", []byte("C0644 5 x\nhello\x00echo smuggled\n"), []byte("\x00\x00\x00"), uint8(5))
	f.Add("-f /x", []byte("echo hidden\n"), []byte("bash-5.2$ "), uint8(2))
	f.Add("-t /x", []byte("C0644 5 x\n"), []byte("\x00\x00\x00\x00"), uint8(9))
	f.Fuzz(func(t *testing.T, args string, client, target []byte, cut uint8) {
		srv, ok := parseSCPArgs(strings.Fields(args))
		if !ok {
			return
		}
		// The target speaks first, then the client, then the target
		// again: enough to reach every state of both sides.
		half := len(target) / 2
		msgs := []scpMsg{tg(string(target[:half])), cl(string(client)), tg(string(target[half:]))}
		for _, digest := range []bool{false, true} {
			obs := func(tp eventSink) fileObserver { return srv.observer(tp, 2, digest) }
			whole := runFiles(t, "scp", obs, digest, msgs, nil)
			parts := runFiles(t, "scp", obs, digest, msgs, rand.New(rand.NewPCG(uint64(cut), 4)))
			if !slices.Equal(whole.events, parts.events) || whole.in != parts.in || whole.out != parts.out {
				t.Fatalf("read boundaries changed the record:\n%q %q %q\n%q %q %q", whole.events, whole.in, whole.out, parts.events, parts.in, parts.out)
			}
			if !digest && (whole.in != string(client) || whole.out != string(target)) {
				t.Fatalf("full policy left bytes out: %q %q", whole.in, whole.out)
			}
		}
	})
}

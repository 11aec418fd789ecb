package sshproxy

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// runSCP feeds an scp conversation (source bytes, sink bytes) through an
// observer for the given server command and returns the events.
func runSCP(t testing.TB, cmd string, client, target []byte, rng *rand.Rand) []string {
	tp, rec := newTestTap()
	o := newSCPObserver(tp, 2, strings.Fields(cmd)[1:])
	if o == nil {
		t.Fatalf("%q not recognized as an scp server", cmd)
	}
	feed := func(f func([]byte) error, b []byte) {
		for len(b) > 0 {
			n := len(b)
			if rng != nil {
				n = min(len(b), 1+rng.IntN(9))
			}
			if err := f(b[:n]); err != nil {
				t.Fatal(err)
			}
			b = b[n:]
		}
	}
	feed(o.fromClient, client)
	feed(o.fromTarget, target)
	var out []string
	for _, e := range rec.Snapshot() {
		out = append(out, strings.TrimSpace(fmt.Sprintf("%s %s %s %d %s", e.Kind, e.Op, e.Text, e.N, strings.Join(e.Args, " "))))
	}
	return out
}

func TestSCPObserver(t *testing.T) {
	tests := []struct {
		name           string
		cmd            string
		client, target string
		want           []string
	}{
		{"upload one file", "scp -t /srv/a.txt",
			"C0644 5 a.txt\nhello\x00", "\x00\x00\x00",
			[]string{"file write /srv/a.txt 5 mode=0644"}},
		{"upload with times into a directory", "scp -p -d -t -- /srv/in",
			"T1700000000 0 1700000000 0\nC0600 3 x\nabc\x00C0644 0 empty\n\x00", "\x00\x00\x00\x00\x00\x00",
			[]string{"file write /srv/in/x 3 mode=0600", "file write /srv/in/empty 0 mode=0644"}},
		{"recursive upload", "scp -r -t /srv",
			"D0755 0 tree\nC0644 2 a\nhi\x00D0700 0 sub\nC0644 1 b\nz\x00E\nE\n", "\x00\x00\x00\x00\x00\x00\x00\x00",
			[]string{"file mkdir /srv/tree 0 mode=0755", "file write /srv/tree/a 2 mode=0644",
				"file mkdir /srv/tree/sub 0 mode=0700", "file write /srv/tree/sub/b 1 mode=0644"}},
		{"upload refused by the target", "scp -t /root/x",
			"C0644 5 x\n", "\x00\x01scp: /root/x: Permission denied\n",
			[]string{"file write /root/x 5 mode=0644", "file error scp: /root/x: Permission denied 0"}},
		{"download", "scp -f /srv/big.bin",
			"\x00\x00\x00", "C0640 10 big.bin\n0123456789\x00",
			[]string{"file read /srv/big.bin 10 mode=0640"}},
		{"recursive download", "scp -r -f /srv/tree",
			"\x00\x00\x00\x00\x00", "D0755 0 tree\nC0644 2 a\nhi\x00E\n",
			[]string{"file read /srv/tree/a 2 mode=0644"}},
		{"source error", "scp -f /nope",
			"\x00", "\x01scp: /nope: No such file or directory\n",
			[]string{"file error scp: /nope: No such file or directory 0"}},
		{"file contents that look like control lines", "scp -t /srv/c",
			"C0644 12 c\nC0644 1 no\n\n\x00", "\x00\x00\x00",
			[]string{"file write /srv/c 12 mode=0644"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := runSCP(t, tc.cmd, []byte(tc.client), []byte(tc.target), nil)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("events\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			for seed := range uint64(20) {
				if again := runSCP(t, tc.cmd, []byte(tc.client), []byte(tc.target), rand.New(rand.NewPCG(seed, 3))); !slices.Equal(again, got) {
					t.Fatalf("seed %d: %q", seed, again)
				}
			}
		})
	}
}

func TestClassifyExec(t *testing.T) {
	c := &sessionChannel{s: &session{}}
	tests := []struct {
		cmd  string
		mode relayMode
	}{
		{"scp -t /tmp", modeSCP},
		{"/usr/bin/scp -r -f -- '/tmp/a b'", modeSCP},
		{"scp --help", modeTerminal},
		{"rsync --server -logDtpre.iLsfxCIvu . /tmp/x", modeTransfer},
		{"rsync -av /a /b", modeTerminal},
		{"head -c 1G /dev/zero", modeTerminal},
		{"", modeTerminal},
	}
	for _, tc := range tests {
		if m, _ := c.classifyExec(tc.cmd); m != tc.mode {
			t.Errorf("%q: mode %d, want %d", tc.cmd, m, tc.mode)
		}
	}
	_, o := c.classifyExec("/usr/bin/scp -r -f -- '/tmp/a b'")
	if s := o.(*scpObserver); s.target != "/tmp/a b" || s.upload || !s.dirTarget {
		t.Errorf("parsed %+v", s)
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
	f.Fuzz(func(t *testing.T, args string, client, target []byte, cut uint8) {
		if newSCPObserver(nil, 1, strings.Fields(args)) == nil {
			return
		}
		cmd := "scp " + args
		whole := runSCP(t, cmd, client, target, nil)
		parts := runSCP(t, cmd, client, target, rand.New(rand.NewPCG(uint64(cut), 4)))
		if !slices.Equal(whole, parts) {
			t.Fatalf("read boundaries changed the events:\n%q\n%q", whole, parts)
		}
	})
}

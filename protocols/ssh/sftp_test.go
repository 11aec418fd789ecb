package sshproxy

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/custos-pam/custos/protocols/lifecycle/lifecycletest"
	"github.com/custos-pam/custos/recorder/event"
)

// sftpPkt builds an SFTP packet from uint32, uint64, string and []byte
// fields.
func sftpPkt(typ byte, fields ...any) []byte {
	body := []byte{typ}
	for _, f := range fields {
		switch v := f.(type) {
		case uint32:
			body = binary.BigEndian.AppendUint32(body, v)
		case int:
			body = binary.BigEndian.AppendUint32(body, uint32(v))
		case uint64:
			body = binary.BigEndian.AppendUint64(body, v)
		case string:
			body = binary.BigEndian.AppendUint32(body, uint32(len(v)))
			body = append(body, v...)
		case []byte:
			body = binary.BigEndian.AppendUint32(body, uint32(len(v)))
			body = append(body, v...)
		default:
			panic(fmt.Sprintf("sftpPkt: %T", f))
		}
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

func cat(ps ...[]byte) []byte { return slices.Concat(ps...) }

// sftpStep is what the client sent, then what the target answered.
type sftpStep struct{ client, target []byte }

func newTestTap() (eventSink, *lifecycletest.Recording) {
	r := lifecycletest.NewRecording(false)
	return r, r
}

// runSFTP relays the steps, after the INIT/VERSION handshake, through a
// fileChannel with an SFTP observer, with reads cut at random sizes (or
// whole when rng is nil), and returns the file events as strings.
func runSFTP(t testing.TB, steps []sftpStep, rng *rand.Rand) []string {
	t.Helper()
	return sftpEvents(t, runSFTPPolicy(t, false, steps, rng))
}

func runSFTPPolicy(t testing.TB, digest bool, steps []sftpStep, rng *rand.Rand) relayRun {
	t.Helper()
	msgs := []scpMsg{cl(string(sftpPkt(sftpInit, 3))), tg(string(sftpPkt(sftpVersion, 3)))}
	for _, s := range steps {
		msgs = append(msgs, cl(string(s.client)), tg(string(s.target)))
	}
	return runFiles(t, "sftp", func(tp eventSink) fileObserver { return newSFTPObserver(tp, 2, digest) }, digest, msgs, rng)
}

func sftpEvents(t testing.TB, r relayRun) []string {
	var out []string
	for _, e := range r.evs {
		if e.Channel != 2 {
			t.Fatalf("event on channel %d", e.Channel)
		}
		out = append(out, fmt.Sprintf("%s %s %d [%s] %s", e.Op, e.Text, e.N, strings.Join(e.Args, " "), e.Name))
	}
	return out
}

func TestSFTPObserver(t *testing.T) {
	const (
		attrsNone = uint32(0)
	)
	data := make([]byte, 70000)
	handle := "\x00\x00\x00\x01"
	tests := []struct {
		name  string
		steps []sftpStep
		want  []string
	}{
		{"upload", []sftpStep{
			{sftpPkt(sftpOpen, 1, "/srv/a.bin", openWrite|openCreate|openTrunc, attrPermissions, 0o100644), sftpPkt(sftpHandle, 1, handle)},
			{sftpPkt(sftpWrite, 2, handle, uint64(0), data), sftpPkt(sftpStatus, 2, 0, "", "")},
			{sftpPkt(sftpWrite, 3, handle, uint64(70000), data[:100]), sftpPkt(sftpStatus, 3, 0, "", "")},
			{sftpPkt(sftpClose, 4, handle), sftpPkt(sftpStatus, 4, 0, "", "")},
		}, []string{
			"open /srv/a.bin 0 [write,create,truncate mode=0644] ok",
			"write /srv/a.bin 70100 [] ok",
		}},
		{"pipelined download", []sftpStep{
			{sftpPkt(sftpOpen, 1, "/srv/b", openRead, attrsNone), sftpPkt(sftpHandle, 1, handle)},
			{cat(sftpPkt(sftpRead, 2, handle, uint64(0), 32768), sftpPkt(sftpRead, 3, handle, uint64(32768), 32768), sftpPkt(sftpRead, 4, handle, uint64(65536), 32768)),
				cat(sftpPkt(sftpData, 3, data[:32768]), sftpPkt(sftpData, 2, data[:32768]), sftpPkt(sftpData, 4, data[:5]))},
			{sftpPkt(sftpRead, 5, handle, uint64(65541), 32768), sftpPkt(sftpStatus, 5, 1, "EOF", "")},
			{sftpPkt(sftpClose, 6, handle), sftpPkt(sftpStatus, 6, 0, "", "")},
		}, []string{
			"open /srv/b 0 [read] ok",
			"read /srv/b 65541 [] ok",
		}},
		{"open refused", []sftpStep{
			{sftpPkt(sftpOpen, 7, "/etc/shadow", openRead, attrsNone), sftpPkt(sftpStatus, 7, 3, "Permission denied", "")},
		}, []string{"open /etc/shadow 0 [read] error: permission denied"}},
		{"namespace operations", []sftpStep{
			{sftpPkt(sftpMkdir, 1, "/srv/d", attrPermissions, 0o755), sftpPkt(sftpStatus, 1, 0, "", "")},
			{sftpPkt(sftpRename, 2, "/srv/a", "/srv/d/a"), sftpPkt(sftpStatus, 2, 0, "", "")},
			{sftpPkt(sftpExtended, 3, "posix-rename@openssh.com", "/srv/d/a", "/srv/d/b"), sftpPkt(sftpStatus, 3, 0, "", "")},
			{sftpPkt(sftpSetstat, 4, "/srv/d/b", attrPermissions|attrACModTime, 0o600, 1, 2), sftpPkt(sftpStatus, 4, 0, "", "")},
			{sftpPkt(sftpSymlink, 5, "/srv/d/b", "/srv/link"), sftpPkt(sftpStatus, 5, 0, "", "")},
			{sftpPkt(sftpRemove, 6, "/srv/missing"), sftpPkt(sftpStatus, 6, 2, "No such file", "")},
			{sftpPkt(sftpRmdir, 7, "/srv/d"), sftpPkt(sftpStatus, 7, 4, "Directory not empty", "")},
			// Requests the observer does not itemize pass by.
			{sftpPkt(17, 8, "/srv"), sftpPkt(105, 8, 0)},
		}, []string{
			"mkdir /srv/d 0 [mode=0755] ok",
			"rename /srv/a 0 [/srv/d/a] ok",
			"rename /srv/d/a 0 [/srv/d/b] ok",
			"setstat /srv/d/b 0 [mode=0600 atime=1 mtime=2] ok",
			"symlink /srv/link 0 [/srv/d/b] ok",
			"remove /srv/missing 0 [] error: no such file",
			"rmdir /srv/d 0 [] error: failure: Directory not empty",
		}},
		{"write failure and fsetstat", []sftpStep{
			{sftpPkt(sftpOpen, 1, "/srv/c", openWrite|openCreate, attrsNone), sftpPkt(sftpHandle, 1, handle)},
			{sftpPkt(sftpFsetstat, 2, handle, attrSize|attrUIDGID, uint64(0), 1000, 1000), sftpPkt(sftpStatus, 2, 0, "", "")},
			{sftpPkt(sftpWrite, 3, handle, uint64(0), data[:10]), sftpPkt(sftpStatus, 3, 0, "", "")},
			{sftpPkt(sftpWrite, 4, handle, uint64(10), data[:10]), sftpPkt(sftpStatus, 4, 4, "No space left on device", "")},
			{sftpPkt(sftpClose, 5, handle), sftpPkt(sftpStatus, 5, 0, "", "")},
		}, []string{
			"open /srv/c 0 [write,create] ok",
			"setstat /srv/c 0 [size=0 uid=1000 gid=1000] ok",
			"write /srv/c 10 [] error: failure: No space left on device",
		}},
		{"channel closes with a file open", []sftpStep{
			{sftpPkt(sftpOpen, 1, "/srv/e", openWrite, attrsNone), sftpPkt(sftpHandle, 1, handle)},
			{sftpPkt(sftpWrite, 2, handle, uint64(0), data[:42]), sftpPkt(sftpStatus, 2, 0, "", "")},
		}, []string{
			"open /srv/e 0 [write] ok",
			"write /srv/e 42 [] incomplete: channel closed with the file open",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := runSFTP(t, tc.steps, nil)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("events\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			// Read boundaries never change what is recorded.
			for seed := range uint64(20) {
				if again := runSFTP(t, tc.steps, rand.New(rand.NewPCG(seed, 1))); !slices.Equal(again, got) {
					t.Fatalf("seed %d: events differ with other read sizes:\n%s", seed, strings.Join(again, "\n"))
				}
			}
		})
	}
}

// TestSFTPDigest moves a file each way under the digest policy: the file
// events carry the SHA-256 of the data in packet order, and the data is
// the only thing left out of the record.
func TestSFTPDigest(t *testing.T) {
	handle := "\x00\x00\x00\x07"
	a, b := strings.Repeat("a", 40000), strings.Repeat("b", 123)
	steps := []sftpStep{
		{sftpPkt(sftpOpen, 1, "/srv/up", openWrite|openCreate, 0), sftpPkt(sftpHandle, 1, handle)},
		{cat(sftpPkt(sftpWrite, 2, handle, uint64(0), a), sftpPkt(sftpWrite, 3, handle, uint64(40000), b)),
			cat(sftpPkt(sftpStatus, 2, 0, "", ""), sftpPkt(sftpStatus, 3, 0, "", ""))},
		{sftpPkt(sftpClose, 4, handle), sftpPkt(sftpStatus, 4, 0, "", "")},
		{sftpPkt(sftpOpen, 5, "/srv/down", openRead, 0), sftpPkt(sftpHandle, 5, handle)},
		{cat(sftpPkt(sftpRead, 6, handle, uint64(0), 32768), sftpPkt(sftpRead, 7, handle, uint64(32768), 32768)),
			cat(sftpPkt(sftpData, 6, b), sftpPkt(sftpData, 7, a))},
		{sftpPkt(sftpClose, 8, handle), sftpPkt(sftpStatus, 8, 0, "", "")},
	}
	got := runSFTPPolicy(t, true, steps, nil)
	want := []string{
		"open /srv/up 0 [write,create] ok",
		"write /srv/up 40123 [" + sha(a+b) + "] ok",
		"open /srv/down 0 [read] ok",
		"read /srv/down 40123 [" + sha(b+a) + "] ok",
	}
	if ev := sftpEvents(t, got); !slices.Equal(ev, want) {
		t.Fatalf("events\n%s\nwant\n%s", strings.Join(ev, "\n"), strings.Join(want, "\n"))
	}
	full := runSFTPPolicy(t, false, steps, nil)
	if len(full.in)-len(got.in) != len(a)+len(b) || len(full.out)-len(got.out) != len(a)+len(b) {
		t.Fatalf("digest left out %d bytes in, %d out; want %d each", len(full.in)-len(got.in), len(full.out)-len(got.out), len(a)+len(b))
	}
	if strings.Contains(got.in, "aaaa") || strings.Contains(got.out, "aaaa") || strings.Contains(got.in, "bbbb") {
		t.Fatal("file data recorded under the digest policy")
	}
	// The headers of the data packets stay.
	if h := sftpPkt(sftpWrite, 3, handle, uint64(40000), b); !strings.Contains(got.in, string(h[:len(h)-len(b)])) {
		t.Error("WRITE header not recorded")
	}
	for seed := range uint64(20) {
		again := runSFTPPolicy(t, true, steps, rand.New(rand.NewPCG(seed, 5)))
		if again.in != got.in || again.out != got.out || !slices.Equal(sftpEvents(t, again), sftpEvents(t, got)) {
			t.Fatalf("seed %d: read boundaries changed the record", seed)
		}
	}
}

// TestSFTPBreak sends streams that stop being SFTP: each is flagged at the
// first bad packet and recorded in full from there, contents included.
func TestSFTPBreak(t *testing.T) {
	handle := "\x00\x00\x00\x01"
	open := sftpStep{sftpPkt(sftpOpen, 1, "/srv/f", openWrite, 0), sftpPkt(sftpHandle, 1, handle)}
	init := cat(sftpPkt(sftpInit, 3))
	write := sftpPkt(sftpWrite, 2, handle, uint64(0), "secret")
	badWrite := slices.Clone(write)
	badWrite[len(badWrite)-10] = 9 // data length 9, packet holds 6
	tests := []struct {
		name string
		msgs []scpMsg
		note string
		in   bool // whether "secret" must be in the client's record
		// files counts file events: an open file is reported at
		// the channel's end.
		files int
	}{
		{"a shell instead of sftp-server", []scpMsg{cl(string(init)), tg("bash-5.2$ ")},
			"from=target offset=4", false, 0},
		{"no INIT", []scpMsg{cl(string(sftpPkt(sftpRemove, 1, "/x")))},
			"from=client offset=4", false, 0},
		{"length beyond any packet", []scpMsg{cl(string(init)), tg(string(sftpPkt(sftpVersion, 3))), cl("\xff\xff\xff\xffgarbage secret")},
			"from=client offset=13", true, 0},
		{"empty packet", []scpMsg{cl(string(init)), tg(string(sftpPkt(sftpVersion, 3))), cl("\x00\x00\x00\x01\x03secret")},
			"from=client offset=13", true, 0},
		{"a reply from the client", []scpMsg{cl(string(init)), tg(string(sftpPkt(sftpVersion, 3))), cl(string(sftpPkt(sftpData, 1, "secret")))},
			"from=client offset=13", true, 0},
		{"WRITE whose data length lies", []scpMsg{cl(string(init)), tg(string(sftpPkt(sftpVersion, 3))),
			cl(string(open.client)), tg(string(open.target)), cl(string(badWrite))},
			"from=client offset=" + fmt.Sprint(len(init)+len(open.client)+len(badWrite)-7), true, 2},
		{"handle too long", []scpMsg{cl(string(init)), tg(string(sftpPkt(sftpVersion, 3))),
			cl(string(sftpPkt(sftpWrite, 2, strings.Repeat("h", 300), uint64(0), "secret")))},
			"from=client offset=" + fmt.Sprint(len(init)+12), true, 0},
		{"DATA whose length lies", []scpMsg{cl(string(init)), tg(string(sftpPkt(sftpVersion, 3))),
			cl(string(open.client)), tg(string(open.target)), cl(string(sftpPkt(sftpRead, 2, handle, uint64(0), 100))),
			tg("\x00\x00\x00\x0f\x67\x00\x00\x00\x02\x00\x00\x00\x09secret")},
			"", false, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, digest := range []bool{false, true} {
				r := runFiles(t, "sftp", func(tp eventSink) fileObserver { return newSFTPObserver(tp, 2, digest) }, digest, tc.msgs, nil)
				var notes []event.Event
				for _, e := range r.evs {
					if e.Kind == event.KindNote {
						notes = append(notes, e)
					}
				}
				if len(notes) != 1 || notes[0].Name != noteStreamBreak || notes[0].Op != "sftp" {
					t.Fatalf("digest=%v: notes %+v", digest, notes)
				}
				if tc.note != "" && strings.Join(notes[0].Args, " ") != tc.note {
					t.Errorf("digest=%v: break %q, want %q", digest, notes[0].Args, tc.note)
				}
				var in, out string
				for _, m := range tc.msgs {
					if m.client {
						in += m.b
					} else {
						out += m.b
					}
				}
				if !digest && (r.in != in || r.out != out) {
					t.Errorf("full policy left bytes out")
				}
				if tc.in && !strings.Contains(r.in, "secret") || strings.Contains(out, "secret") && !strings.Contains(r.out, "secret") {
					t.Errorf("digest=%v: bytes after the break not recorded: %q %q", digest, r.in, r.out)
				}
				if n := len(r.evs) - len(notes); n != tc.files {
					t.Errorf("digest=%v: %d file events, want %d", digest, n, tc.files)
				}
			}
		})
	}
}

// TestSFTPDecodeAllocations checks that relaying and recording file data
// costs no allocation per packet, under either policy.
func TestSFTPDecodeAllocations(t *testing.T) {
	for _, digest := range []bool{false, true} {
		rec := lifecycletest.NewRecording(true)
		var tp eventSink = rec
		f := &fileChannel{rec: tp, ch: 1, proto: "sftp", obs: newSFTPObserver(tp, 1, digest), digest: digest}
		handle := "\x00\x00\x00\x01"
		f.fromClient(sftpPkt(sftpInit, 3))
		f.fromTarget(sftpPkt(sftpVersion, 3))
		f.fromClient(sftpPkt(sftpOpen, 1, "/f", openWrite, 0))
		f.fromTarget(sftpPkt(sftpHandle, 1, handle))
		write := sftpPkt(sftpWrite, 2, handle, uint64(0), make([]byte, 32768))
		ok := sftpPkt(sftpStatus, 2, 0, "", "")
		allocs := testing.AllocsPerRun(1000, func() {
			if err := f.fromClient(write); err != nil {
				t.Fatal(err)
			}
			if err := f.fromTarget(ok); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > 0 {
			t.Fatalf("digest=%v: %.1f allocations per write", digest, allocs)
		}
		if f.broken.Load() {
			t.Fatal("stream broke")
		}
	}
}

func FuzzSFTPObserver(f *testing.F) {
	handle := "\x00\x00\x00\x01"
	f.Add(sftpPkt(sftpOpen, 1, "/a", openRead, 0), sftpPkt(sftpHandle, 1, handle), uint8(7))
	f.Add(cat(sftpPkt(sftpWrite, 2, handle, uint64(0), "xyz"), sftpPkt(sftpClose, 3, handle)),
		cat(sftpPkt(sftpStatus, 2, 0, "", ""), sftpPkt(sftpStatus, 3, 0, "", "")), uint8(1))
	f.Add(cat(sftpPkt(sftpInit, 3), sftpPkt(sftpOpen, 1, "/a", openWrite, 0), sftpPkt(sftpWrite, 2, handle, uint64(0), "xyz")),
		cat(sftpPkt(sftpVersion, 3), sftpPkt(sftpHandle, 1, handle), sftpPkt(sftpStatus, 2, 0, "", "")), uint8(3))
	f.Add(cat(sftpPkt(sftpInit, 3), sftpPkt(sftpOpen, 1, "/a", openRead, 0), sftpPkt(sftpRead, 2, handle, uint64(0), 10)),
		cat(sftpPkt(sftpVersion, 3), sftpPkt(sftpHandle, 1, handle), sftpPkt(sftpData, 2, "0123456789")), uint8(11))
	f.Add(sftpPkt(sftpInit, 3), []byte("bash-5.2$ "), uint8(2))
	f.Fuzz(func(t *testing.T, client, target []byte, cut uint8) {
		msgs := []scpMsg{cl(string(client)), tg(string(target))}
		for _, digest := range []bool{false, true} {
			obs := func(tp eventSink) fileObserver { return newSFTPObserver(tp, 2, digest) }
			whole := runFiles(t, "sftp", obs, digest, msgs, nil)
			parts := runFiles(t, "sftp", obs, digest, msgs, rand.New(rand.NewPCG(uint64(cut), 2)))
			if !slices.Equal(whole.events, parts.events) || whole.in != parts.in || whole.out != parts.out {
				t.Fatalf("read boundaries changed the record:\n%q %q %q\n%q %q %q", whole.events, whole.in, whole.out, parts.events, parts.in, parts.out)
			}
			if !digest && (whole.in != string(client) || whole.out != string(target)) {
				t.Fatalf("full policy left bytes out")
			}
		}
	})
}

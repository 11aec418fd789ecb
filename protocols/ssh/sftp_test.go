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
	r := &lifecycletest.Recording{}
	return r, r
}

// runSFTP feeds the steps with reads cut at random sizes (or whole when
// rng is nil) and returns the file events as strings.
func runSFTP(t testing.TB, steps []sftpStep, rng *rand.Rand) []string {
	tp, rec := newTestTap()
	o := newSFTPObserver(tp, 3)
	feed := func(f func([]byte) error, b []byte) {
		for len(b) > 0 {
			n := len(b)
			if rng != nil {
				n = min(len(b), 1+rng.IntN(40))
			}
			if err := f(b[:n]); err != nil {
				t.Fatal(err)
			}
			b = b[n:]
		}
	}
	for _, s := range steps {
		feed(o.fromClient, s.client)
		feed(o.fromTarget, s.target)
	}
	if err := o.close(); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range rec.Snapshot() {
		if e.Channel != 3 {
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
			{sftpPkt(sftpInit, 3), sftpPkt(sftpVersion, 3)},
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

func TestSFTPDesync(t *testing.T) {
	tp, rec := newTestTap()
	o := newSFTPObserver(tp, 1)
	// A length far beyond any SFTP packet: not SFTP.
	if err := o.fromClient([]byte("\xff\xff\xff\xffgarbage")); err != nil {
		t.Fatal(err)
	}
	if err := o.fromClient(sftpPkt(sftpRemove, 1, "/x")); err != nil {
		t.Fatal(err)
	}
	notes := rec.Find(event.KindNote, "sftp")
	if len(notes) != 1 || len(rec.Find(event.KindFile, "")) != 0 {
		t.Fatalf("events:\n%s", rec.Dump())
	}
}

// TestSFTPDecodeAllocations checks that relaying file data costs no
// allocation per packet.
func TestSFTPDecodeAllocations(t *testing.T) {
	tp, _ := newTestTap()
	o := newSFTPObserver(tp, 1)
	handle := "\x00\x00\x00\x01"
	o.fromClient(sftpPkt(sftpOpen, 1, "/f", openWrite, 0))
	o.fromTarget(sftpPkt(sftpHandle, 1, handle))
	write := sftpPkt(sftpWrite, 2, handle, uint64(0), make([]byte, 32768))
	ok := sftpPkt(sftpStatus, 2, 0, "", "")
	allocs := testing.AllocsPerRun(1000, func() {
		o.fromClient(write)
		o.fromTarget(ok)
	})
	if allocs > 0 {
		t.Fatalf("%.1f allocations per write", allocs)
	}
}

func FuzzSFTPObserver(f *testing.F) {
	handle := "\x00\x00\x00\x01"
	f.Add(sftpPkt(sftpOpen, 1, "/a", openRead, 0), sftpPkt(sftpHandle, 1, handle), uint8(7))
	f.Add(cat(sftpPkt(sftpWrite, 2, handle, uint64(0), "xyz"), sftpPkt(sftpClose, 3, handle)),
		cat(sftpPkt(sftpStatus, 2, 0, "", ""), sftpPkt(sftpStatus, 3, 0, "", "")), uint8(1))
	f.Fuzz(func(t *testing.T, client, target []byte, cut uint8) {
		whole := runSFTP(t, []sftpStep{{client, target}}, nil)
		parts := runSFTP(t, []sftpStep{{client, target}}, rand.New(rand.NewPCG(uint64(cut), 2)))
		if !slices.Equal(whole, parts) {
			t.Fatalf("read boundaries changed the events:\n%q\n%q", whole, parts)
		}
	})
}

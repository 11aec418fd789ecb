package sshproxy

import (
	"strconv"
	"sync/atomic"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/recorder/event"
)

// noteStreamBreak names the note that flags a channel whose stream stopped
// parsing as the file-transfer protocol its command or subsystem claimed.
const noteStreamBreak = event.FlagStreamBreak

// A span is a range p[off:off+n] of a relayed buffer p.
type span struct{ off, n int }

// parsed is what an observer made of one relayed buffer p.
type parsed struct {
	// n is how many leading bytes of p parsed as the protocol. n <
	// len(p) means the stream broke at p[n]: the observer has given up
	// on it and sees nothing more.
	n int
	// content lists, in order, the ranges of p[:n] that are the contents
	// of a correctly framed file. The slice belongs to the observer and
	// is reused by its next call for the same direction.
	content []span
}

// fileObserver follows a file-transfer protocol (scp, SFTP) in both
// directions and records file events. It never decides what is recorded
// of the stream itself: fileChannel does, from what it returns.
type fileObserver interface {
	// fromClient and fromTarget see the relayed stdin and stdout bytes
	// in order, from two goroutines. An error is a recording failure.
	fromClient(p []byte) (parsed, error)
	fromTarget(p []byte) (parsed, error)
	// close reports transfers still open when the channel ends. It may
	// run while fromClient is still being called.
	close() error
}

// fileChannel records an scp or SFTP channel. Observers only add file
// events on top of the record:
//
//   - under the full policy every byte is recorded as stream data;
//   - under the digest policy the contents of correctly framed files are
//     left out (the observer records their size and SHA-256 instead), and
//     every other byte is recorded;
//   - when either direction stops parsing as the protocol, the channel is
//     flagged with a note and both directions are recorded in full from
//     that byte on, whatever the policy.
type fileChannel struct {
	rec    eventSink
	ch     uint32
	proto  string
	obs    fileObserver
	digest bool
	broken atomic.Bool
	// in and out are the stream offsets of the next byte from the client
	// and from the target; each is used by one copier only.
	in, out int64
}

// digestContents reports whether the session's target records file
// contents as digests.
func (s *session) digestContents() bool {
	return s.Target != nil && s.Target.Recording.FileContents == config.FileContentsDigest
}

func newFileChannel(s *session, ch uint32, proto string, obs fileObserver) *fileChannel {
	return &fileChannel{rec: s, ch: ch, proto: proto, obs: obs, digest: s.digestContents()}
}

// fromClient records and observes bytes on their way to the target.
func (f *fileChannel) fromClient(p []byte) error {
	return f.relay(event.KindInput, p, &f.in, "client", f.obs.fromClient)
}

// fromTarget records and observes bytes on their way to the client.
func (f *fileChannel) fromTarget(p []byte) error {
	return f.relay(event.KindOutput, p, &f.out, "target", f.obs.fromTarget)
}

func (f *fileChannel) relay(k event.Kind, p []byte, off *int64, from string, observe func([]byte) (parsed, error)) error {
	at := *off
	*off += int64(len(p))
	if f.broken.Load() {
		return f.rec.Data(k, f.ch, p)
	}
	r, err := observe(p)
	if err != nil {
		return err
	}
	n := min(max(r.n, 0), len(p))
	if f.digest {
		err = f.recordExcept(k, p[:n], r.content)
	} else {
		err = f.data(k, p[:n])
	}
	if err != nil || n == len(p) {
		return err
	}
	if err := f.brk(from, at+int64(n)); err != nil {
		return err
	}
	return f.rec.Data(k, f.ch, p[n:])
}

func (f *fileChannel) data(k event.Kind, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	return f.rec.Data(k, f.ch, p)
}

// recordExcept records p without the content spans.
func (f *fileChannel) recordExcept(k event.Kind, p []byte, content []span) error {
	off := 0
	for _, s := range content {
		if s.off < off || s.off+s.n > len(p) {
			// An observer bug must not hide bytes.
			return f.data(k, p[off:])
		}
		if err := f.data(k, p[off:s.off]); err != nil {
			return err
		}
		off = s.off + s.n
	}
	return f.data(k, p[off:])
}

// brk flags the channel, once: from here on both directions are recorded
// in full.
func (f *fileChannel) brk(from string, at int64) error {
	if f.broken.Swap(true) {
		return nil
	}
	return f.rec.Record(event.Event{Kind: event.KindNote, Channel: f.ch, Op: f.proto, Name: noteStreamBreak,
		Text: "stream stopped parsing as " + f.proto + "; recorded in full from here",
		Args: []string{"from=" + from, "offset=" + strconv.FormatInt(at, 10)}, N: at})
}

func (f *fileChannel) close() error { return f.obs.close() }

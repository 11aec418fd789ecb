package recorder

import (
	"slices"
	"sync"
	"time"

	"github.com/custos-pam/custos/recorder/event"
)

// Live view: a running session's recorded events can be watched. Each
// Writer keeps what a watcher who joins late needs (the recent output of
// the session's terminal channel in a bounded ring, the recent structured
// events) and hands every recorded event to its subscribers. Keeping that
// costs a copy into the ring per write; nothing is emulated or encoded for
// a session nobody watches, and a subscriber that cannot keep up is
// dropped, so recording never waits for a watcher.

// LiveOutputMax bounds the recent terminal output a live session keeps
// for late watchers.
const LiveOutputMax = 256 << 10

// liveRecentEvents bounds the recent structured events a live session
// keeps for late watchers.
const liveRecentEvents = 500

// LiveView is a live session as a new subscriber first sees it.
type LiveView struct {
	Header event.Header
	// Terminal reports that the session has a terminal channel: the
	// first channel with a pty, or else the first with output (never for
	// PostgreSQL). Channel, Cols, Rows and Output describe it.
	Terminal   bool
	Channel    uint32
	Cols, Rows uint32
	// Output is the channel's most recent output (stdout and stderr as
	// they were recorded), at most LiveOutputMax bytes, oldest first,
	// written since the channel was chosen.
	Output []byte
	// Recent are the latest structured (non-terminal) events, oldest
	// first, at most 500.
	Recent []event.Event
	// Ended is the end event when the session has ended.
	Ended *event.Event
}

// Subscription delivers a live session's events as they are recorded,
// each with its offset in the recording. Events sent before the
// subscriber was dropped stay readable after Gone closes.
type Subscription struct {
	view   LiveView
	events chan event.Event
	gone   chan struct{}
	once   sync.Once
	w      *Writer
}

// View is the session as it was when the subscription began; no event
// falls between it and the first event delivered.
func (s *Subscription) View() LiveView { return s.view }

// Events delivers the events recorded after View, ending with the end
// event.
func (s *Subscription) Events() <-chan event.Event { return s.events }

// Gone is closed when the session has ended or the subscriber fell more
// than its buffer behind and was dropped.
func (s *Subscription) Gone() <-chan struct{} { return s.gone }

// Cancel ends the subscription.
func (s *Subscription) Cancel() {
	s.w.mu.Lock()
	delete(s.w.live.subs, s)
	s.w.mu.Unlock()
	s.close()
}

func (s *Subscription) close() { s.once.Do(func() { close(s.gone) }) }

// Subscribe subscribes to a session recorded by this process. buffer is
// how many events the subscriber may fall behind before it is dropped.
// It reports false when the session is not being recorded here.
func (r *Recorder) Subscribe(sessionID string, buffer int) (*Subscription, bool) {
	w, ok := r.Live(sessionID)
	if !ok {
		return nil, false
	}
	return w.subscribe(buffer), true
}

func (w *Writer) subscribe(buffer int) *Subscription {
	w.mu.Lock()
	defer w.mu.Unlock()
	f := &w.live
	s := &Subscription{w: w, events: make(chan event.Event, max(buffer, 1)), gone: make(chan struct{}),
		view: LiveView{Header: w.header, Terminal: f.term, Channel: f.channel, Cols: f.cols, Rows: f.rows,
			Output: f.out.bytes(), Recent: f.recentEvents(), Ended: f.ended}}
	if f.ended != nil {
		s.close()
		return s
	}
	if f.subs == nil {
		f.subs = map[*Subscription]struct{}{}
	}
	f.subs[s] = struct{}{}
	return s
}

// liveFeed is a Writer's live view state; the Writer's mu guards it.
type liveFeed struct {
	chosen     bool // the terminal channel is decided
	term       bool // ... and it is a terminal whose output is kept
	channel    uint32
	cols, rows uint32
	out        byteRing
	recent     []event.Event
	next       int // where the next recent event goes once recent is full
	subs       map[*Subscription]struct{}
	ended      *event.Event
}

// data publishes terminal bytes recorded at off. Callers hold w.mu.
func (f *liveFeed) data(h *event.Header, k event.Kind, ch uint32, p []byte, off time.Duration) {
	if f.ended != nil {
		return
	}
	if k != event.KindInput && h.Protocol != "postgres" {
		if !f.chosen {
			f.choose(ch, 80, 24)
		}
		if f.term && ch == f.channel {
			f.out.write(p)
		}
	}
	if len(f.subs) > 0 {
		f.send(event.Event{Kind: k, Channel: ch, Data: slices.Clone(p), Offset: off})
	}
}

// record publishes a structured event (its Offset set). Callers hold
// w.mu.
func (f *liveFeed) record(e event.Event) {
	if f.ended != nil {
		return
	}
	switch {
	case e.Kind == event.KindSSHRequest && e.Op == "pty-req":
		if !f.chosen || (!f.term && f.channel == e.Channel) {
			f.choose(e.Channel, orDefault(e.Cols, 80), orDefault(e.Rows, 24))
		}
	case e.Kind == event.KindResize && f.term && e.Channel == f.channel:
		f.cols, f.rows = orDefault(e.Cols, 80), orDefault(e.Rows, 24)
	}
	e.Data, e.Args = slices.Clone(e.Data), slices.Clone(e.Args)
	if len(f.recent) < liveRecentEvents {
		f.recent = append(f.recent, e)
	} else {
		f.recent[f.next] = e
		f.next = (f.next + 1) % liveRecentEvents
	}
	if e.Kind == event.KindEnd {
		end := e
		f.ended = &end
	}
	f.send(e)
	if f.ended != nil {
		for s := range f.subs {
			s.close()
		}
		f.subs = nil
	}
}

func (f *liveFeed) choose(ch, cols, rows uint32) {
	f.chosen, f.term, f.channel, f.cols, f.rows = true, true, ch, cols, rows
	f.out.reset()
}

// send hands e to every subscriber, dropping those whose buffer is full.
func (f *liveFeed) send(e event.Event) {
	for s := range f.subs {
		select {
		case s.events <- e:
		default:
			delete(f.subs, s)
			s.close()
		}
	}
}

func (f *liveFeed) recentEvents() []event.Event {
	out := make([]event.Event, 0, len(f.recent))
	out = append(out, f.recent[f.next:]...)
	return append(out, f.recent[:f.next]...)
}

func orDefault(v, def uint32) uint32 {
	if v == 0 {
		return def
	}
	return v
}

// byteRing keeps the last LiveOutputMax bytes written to it. Its buffer
// grows with use up to that size and is then reused.
type byteRing struct {
	b    []byte
	head int // once b is full, where the oldest byte is and the next write goes
}

func (r *byteRing) write(p []byte) {
	if len(p) >= LiveOutputMax {
		r.b, r.head = r.b[:0], 0
		r.grow(LiveOutputMax)
		r.b = append(r.b, p[len(p)-LiveOutputMax:]...)
		return
	}
	if room := LiveOutputMax - len(r.b); room > 0 {
		n := min(room, len(p))
		r.grow(n)
		r.b = append(r.b, p[:n]...)
		p = p[n:]
	}
	for len(p) > 0 {
		n := copy(r.b[r.head:], p)
		p = p[n:]
		r.head = (r.head + n) % LiveOutputMax
	}
}

// grow makes room for n more bytes, doubling up to LiveOutputMax and
// never past it: the ring holds no more than it keeps.
func (r *byteRing) grow(n int) {
	if need := len(r.b) + n; need > cap(r.b) {
		nb := make([]byte, len(r.b), min(max(2*cap(r.b), need, 4<<10), LiveOutputMax))
		copy(nb, r.b)
		r.b = nb
	}
}

// bytes returns a copy of the kept bytes, oldest first.
func (r *byteRing) bytes() []byte {
	out := make([]byte, 0, len(r.b))
	out = append(out, r.b[r.head:]...)
	return append(out, r.b[:r.head]...)
}

func (r *byteRing) reset() { r.b, r.head = r.b[:0], 0 }

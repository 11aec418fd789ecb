package webui

import (
	"slices"
	"sync"
	"time"

	"github.com/custos-pam/custos/recorder/event"
	"github.com/custos-pam/custos/web/ui/internal/vt"
)

// Recording is a session's recording as the proxies drive it;
// *recorder.Writer implements it. Tap wraps one so watchers see what is
// recorded.
type Recording interface {
	Header() event.Header
	Output(ch uint32, p []byte) error
	Stderr(ch uint32, p []byte) error
	Input(ch uint32, p []byte) error
	Record(e event.Event) error
	Done() <-chan struct{}
	Close() error
	Terminate(by, reason string) error
}

// Hub fans the events of running sessions out to live watchers. For a
// terminal session it keeps an emulated screen, so a watcher who joins
// late first sees what is on the user's screen; for other sessions it
// keeps the latest events. It holds nothing once a session ends. A watcher
// that cannot keep up is dropped (its page reconnects and gets a fresh
// screen); the recording itself never waits for a watcher.
type Hub struct {
	mu       sync.Mutex
	sessions map[string]*liveSession
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{sessions: map[string]*liveSession{}} }

// recentEvents bounds the events kept for late watchers of non-terminal
// sessions.
const recentEvents = 500

// watcherBuffer is how many events a watcher may fall behind.
const watcherBuffer = 1024

type liveSession struct {
	mu       sync.Mutex
	header   event.Header
	start    time.Time
	channel  uint32
	chosen   bool
	screen   *vt.Screen
	recent   []liveEvent
	watchers map[*watcher]struct{}
	ended    *liveEvent
}

// liveEvent is an event with its offset from the session start.
type liveEvent struct {
	event.Event
}

type watcher struct {
	events chan liveEvent
	// gone is closed when the hub drops the watcher or the session ends.
	gone chan struct{}
	once sync.Once
}

func (w *watcher) close() { w.once.Do(func() { close(w.gone) }) }

// Tap wraps a recording so its events reach the hub's watchers. Use it
// where the proxies start recordings:
//
//	w, err := rec.Start(ctx, h)
//	if err != nil {
//		return nil, err
//	}
//	return hub.Tap(w), nil
func (h *Hub) Tap(rec Recording) *Tap {
	hdr := rec.Header()
	start := hdr.StartedAt
	if start.IsZero() {
		start = time.Now()
	}
	ls := &liveSession{header: hdr, start: start, watchers: map[*watcher]struct{}{}}
	h.mu.Lock()
	h.sessions[hdr.SessionID] = ls
	h.mu.Unlock()
	return &Tap{rec: rec, hub: h, ls: ls}
}

// Has reports whether a session is live on this broker and watchable.
func (h *Hub) Has(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.sessions[id]
	return ok
}

// Headers lists the live sessions' headers.
func (h *Hub) Headers() []event.Header {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]event.Header, 0, len(h.sessions))
	for _, ls := range h.sessions {
		out = append(out, ls.header)
	}
	return out
}

func (h *Hub) get(id string) *liveSession {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sessions[id]
}

func (h *Hub) remove(ls *liveSession) {
	h.mu.Lock()
	if h.sessions[ls.header.SessionID] == ls {
		delete(h.sessions, ls.header.SessionID)
	}
	h.mu.Unlock()
}

// liveView is what a new watcher starts from.
type liveView struct {
	header     event.Header
	channel    uint32
	cols, rows int
	snapshot   []byte // terminal sessions: the screen now
	text       string
	recent     []liveEvent
	ended      *liveEvent
}

// watch subscribes to a live session. The view and the subscription are
// taken under one lock, so no event falls between them.
func (h *Hub) watch(id string) (*watcher, liveView, func(), bool) {
	ls := h.get(id)
	if ls == nil {
		return nil, liveView{}, nil, false
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	v := liveView{header: ls.header, channel: ls.channel, recent: slices.Clone(ls.recent), ended: ls.ended}
	if ls.screen != nil {
		v.cols, v.rows = ls.screen.Size()
		v.snapshot = ls.screen.Snapshot()
		v.text = ls.screen.Text()
	}
	w := &watcher{events: make(chan liveEvent, watcherBuffer), gone: make(chan struct{})}
	if ls.ended != nil {
		w.close()
		return w, v, func() {}, true
	}
	ls.watchers[w] = struct{}{}
	cancel := func() {
		ls.mu.Lock()
		delete(ls.watchers, w)
		ls.mu.Unlock()
		w.close()
	}
	return w, v, cancel, true
}

// publish applies an event to the session's view and hands it to every
// watcher.
func (ls *liveSession) publish(e event.Event) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.ended != nil {
		return
	}
	e.Offset = time.Since(ls.start)
	le := liveEvent{e}
	ls.apply(e)
	if !e.Kind.Terminal() {
		ls.recent = append(ls.recent, le)
		if len(ls.recent) > recentEvents {
			ls.recent = slices.Delete(ls.recent, 0, len(ls.recent)-recentEvents)
		}
	}
	if e.Kind == event.KindEnd {
		ls.ended = &le
	}
	for w := range ls.watchers {
		select {
		case w.events <- le:
		default:
			delete(ls.watchers, w)
			w.close()
		}
	}
	if ls.ended != nil {
		for w := range ls.watchers {
			w.close()
		}
		ls.watchers = nil
	}
}

// apply keeps the emulated screen of the session's terminal channel: the
// first channel with a pty, or else the first with output.
func (ls *liveSession) apply(e event.Event) {
	switch {
	case e.Kind == event.KindSSHRequest && e.Op == "pty-req":
		if !ls.chosen || (ls.screen == nil && ls.channel == e.Channel) {
			ls.channel, ls.chosen = e.Channel, true
			ls.screen = vt.New(int(orDefault(e.Cols, 80)), int(orDefault(e.Rows, 24)))
		}
	case e.Kind == event.KindResize && ls.chosen && e.Channel == ls.channel && ls.screen != nil:
		ls.screen.Resize(int(orDefault(e.Cols, 80)), int(orDefault(e.Rows, 24)))
	case (e.Kind == event.KindOutput || e.Kind == event.KindStderr) && ls.header.Protocol != "postgres":
		if !ls.chosen {
			ls.channel, ls.chosen = e.Channel, true
			ls.screen = vt.New(80, 24)
		}
		if e.Channel == ls.channel && ls.screen != nil {
			ls.screen.Write(e.Data)
		}
	}
}

func orDefault(v, def uint32) uint32 {
	if v == 0 {
		return def
	}
	return v
}

// Tap is a recording whose events are also published to live watchers.
// Its methods record first; only what was recorded is shown.
type Tap struct {
	rec Recording
	hub *Hub
	ls  *liveSession
}

// Header returns the session header.
func (t *Tap) Header() event.Header { return t.rec.Header() }

// Output records and publishes stdout bytes.
func (t *Tap) Output(ch uint32, p []byte) error { return t.data(event.KindOutput, ch, p, t.rec.Output) }

// Stderr records and publishes stderr bytes.
func (t *Tap) Stderr(ch uint32, p []byte) error { return t.data(event.KindStderr, ch, p, t.rec.Stderr) }

// Input records and publishes client bytes.
func (t *Tap) Input(ch uint32, p []byte) error { return t.data(event.KindInput, ch, p, t.rec.Input) }

func (t *Tap) data(k event.Kind, ch uint32, p []byte, rec func(uint32, []byte) error) error {
	if err := rec(ch, p); err != nil {
		return err
	}
	t.ls.publish(event.Event{Kind: k, Channel: ch, Data: slices.Clone(p)})
	return nil
}

// Record records and publishes a structured event.
func (t *Tap) Record(e event.Event) error {
	if err := t.rec.Record(e); err != nil {
		return err
	}
	e.Data = slices.Clone(e.Data)
	e.Args = slices.Clone(e.Args)
	t.ls.publish(e)
	return nil
}

// Done is the recording's Done.
func (t *Tap) Done() <-chan struct{} { return t.rec.Done() }

// Close ends the recording and the live view.
func (t *Tap) Close() error {
	err := t.rec.Close()
	t.end(event.Event{Kind: event.KindEnd, Op: "closed"})
	return err
}

// Terminate ends the recording as terminated and ends the live view.
func (t *Tap) Terminate(by, reason string) error {
	err := t.rec.Terminate(by, reason)
	t.end(event.Event{Kind: event.KindEnd, Op: "terminated", Name: by, Text: reason})
	return err
}

func (t *Tap) end(e event.Event) {
	t.ls.publish(e)
	t.hub.remove(t.ls)
}

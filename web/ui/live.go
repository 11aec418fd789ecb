package webui

import (
	"sync/atomic"

	"github.com/custos-pam/custos/recorder"
	"github.com/custos-pam/custos/recorder/event"
	"github.com/custos-pam/custos/web/ui/internal/vt"
)

// LiveSource is where running sessions are watched from;
// *recorder.Recorder implements it.
type LiveSource interface {
	// Live reports a session being recorded by this process.
	Live(sessionID string) (*recorder.Writer, bool)
	// Subscribe starts watching one; buffer is how far the watcher may
	// fall behind before it is dropped.
	Subscribe(sessionID string, buffer int) (*recorder.Subscription, bool)
}

// Hub lets watchers follow running sessions. It subscribes to the
// recorder when a watcher arrives and builds the watcher's first screen
// then, from the session's recent output; while nobody watches a session,
// the hub does no work for it. A watcher that cannot keep up is dropped
// (its page reconnects and gets a fresh screen); the recording itself
// never waits for a watcher.
type Hub struct {
	src LiveSource
	// screens counts the terminal emulators built, one per watcher of a
	// terminal session.
	screens atomic.Int64
}

// NewHub returns a hub over the recorder's running sessions.
func NewHub(src LiveSource) *Hub { return &Hub{src: src} }

// watcherBuffer is how many events a watcher may fall behind.
const watcherBuffer = 1024

// Has reports whether a session is live on this broker and watchable.
func (h *Hub) Has(id string) bool {
	_, ok := h.src.Live(id)
	return ok
}

// liveView is what a new watcher starts from.
type liveView struct {
	header     event.Header
	channel    uint32
	cols, rows int
	snapshot   []byte // terminal sessions: the screen now
	text       string
	recent     []event.Event
	ended      *event.Event
}

// watch subscribes to a live session and renders the screen a watcher
// starts from. No event falls between the view and the subscription.
func (h *Hub) watch(id string) (*recorder.Subscription, liveView, bool) {
	sub, ok := h.src.Subscribe(id, watcherBuffer)
	if !ok {
		return nil, liveView{}, false
	}
	rv := sub.View()
	v := liveView{header: rv.Header, channel: rv.Channel, recent: rv.Recent, ended: rv.Ended}
	if rv.Terminal {
		h.screens.Add(1)
		screen := vt.New(int(rv.Cols), int(rv.Rows))
		screen.Write(rv.Output)
		v.cols, v.rows = screen.Size()
		v.snapshot = screen.Snapshot()
		v.text = screen.Text()
	}
	return sub, v, true
}

// orDefault is v, or def when v is zero (a terminal size not given).
func orDefault(v, def uint32) uint32 {
	if v == 0 {
		return def
	}
	return v
}

package webui

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/custos-pam/custos/recorder"
	"github.com/custos-pam/custos/recorder/event"
	"github.com/custos-pam/custos/web/ui/internal/vt"
)

// Seeking. A terminal recording is a stream of output bytes whose meaning
// at any instant depends on everything before it. To jump to time T
// without replaying from the start, the broker reads the recording once,
// through a headless terminal emulator (internal/vt), and keeps keyframes:
// at a chunk boundary every keyEvery of session time (or keyBytes of
// output), the emulated screen serialized as escape sequences, with the
// chunk it belongs to. A seek to T takes the last keyframe at or before T,
// draws it on a fresh emulator, applies the few events between the
// keyframe and T from that one chunk on, and sends the browser the
// resulting screen; playback continues from there. The index is built in
// the background when a recording is first opened (chunks are fetched and
// decrypted eight at a time) and kept in memory for the next viewers; a
// seek waits only until the build has passed T.
const (
	keyEvery     = 10 * time.Second
	keyBytes     = 256 << 10
	maxMarkers   = 5000
	indexTimeout = 10 * time.Minute
	fetchAhead   = 8
)

// keyframe is the screen at the start of a chunk.
type keyframe struct {
	at         time.Duration
	chunk      int
	cols, rows int
	snap       []byte // nil: a blank screen
}

// marker is a point of interest on the replay timeline.
type marker struct {
	T     float64 `json:"t"` // milliseconds
	Kind  string  `json:"kind"`
	Label string  `json:"label"`
}

// seekIndex is a recording's keyframes and markers, built once.
type seekIndex struct {
	mu       sync.Mutex
	progress chan struct{} // closed and replaced when the build advances
	chosen   bool
	channel  uint32
	cols     int
	rows     int
	keys     []keyframe
	markers  []marker
	covered  time.Duration
	done     bool
	err      error
	duration time.Duration
}

func newSeekIndex(duration time.Duration) *seekIndex {
	return &seekIndex{progress: make(chan struct{}), cols: 80, rows: 24, duration: duration,
		keys: []keyframe{{at: 0, chunk: 0}}}
}

// advance publishes progress. Callers hold mu.
func (x *seekIndex) advance() {
	close(x.progress)
	x.progress = make(chan struct{})
}

// wait blocks until ready reports true (called with mu held) or ctx ends.
func (x *seekIndex) wait(ctx context.Context, ready func() bool) error {
	for {
		x.mu.Lock()
		if ready() {
			x.mu.Unlock()
			return nil
		}
		if x.done {
			err := x.err
			x.mu.Unlock()
			if err == nil {
				return nil
			}
			return err
		}
		ch := x.progress
		x.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// terminal returns the chosen channel and initial size, once known.
func (x *seekIndex) terminal(ctx context.Context) (ch uint32, cols, rows int, err error) {
	err = x.wait(ctx, func() bool { return x.chosen })
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.channel, x.cols, x.rows, err
}

// keyframeAt waits until the index covers t and returns the keyframe to
// start from.
func (x *seekIndex) keyframeAt(ctx context.Context, t time.Duration) (keyframe, error) {
	if err := x.wait(ctx, func() bool { return x.covered >= t }); err != nil {
		return keyframe{}, err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	i := sort.Search(len(x.keys), func(i int) bool { return x.keys[i].at > t }) - 1
	k := x.keys[max(i, 0)]
	if k.snap == nil {
		k.cols, k.rows = x.cols, x.rows
	}
	return k, nil
}

// state summarizes the index for the page.
func (x *seekIndex) state() (markers []marker, keys int, done bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]marker(nil), x.markers...), len(x.keys), x.done
}

// build reads the whole recording once, in order, keeping keyframes and
// markers.
func (x *seekIndex) build(ctx context.Context, rec *recorder.Recording) {
	m := rec.Manifest()
	n := len(m.Chunks)
	chunks := prefetch(ctx, rec, n)
	var screen *vt.Screen
	var lastKey time.Duration
	var sinceKey int
	for i := range n {
		r := <-chunks[i]
		if r.err != nil {
			x.finish(r.err)
			return
		}
		x.mu.Lock()
		if i > 0 && screen != nil && (m.Chunks[i].First-lastKey >= keyEvery || sinceKey >= keyBytes) {
			cols, rows := screen.Size()
			x.keys = append(x.keys, keyframe{at: m.Chunks[i].First, chunk: i, cols: cols, rows: rows, snap: screen.Snapshot()})
			lastKey, sinceKey = m.Chunks[i].First, 0
		}
		for _, e := range r.evs {
			screen, sinceKey = x.observe(e, screen, sinceKey)
		}
		x.covered = m.Chunks[i].Last
		x.advance()
		x.mu.Unlock()
	}
	x.finish(nil)
}

// observe applies one event to the index. Callers hold mu.
func (x *seekIndex) observe(e event.Event, screen *vt.Screen, sinceKey int) (*vt.Screen, int) {
	switch {
	case e.Kind == event.KindSSHRequest && e.Op == "pty-req" && !x.chosen:
		x.choose(e.Channel, int(orDefault(e.Cols, 80)), int(orDefault(e.Rows, 24)))
		return vt.New(x.cols, x.rows), sinceKey
	case (e.Kind == event.KindOutput || e.Kind == event.KindStderr || e.Kind == event.KindResize) && !x.chosen:
		x.choose(e.Channel, 80, 24)
		screen = vt.New(x.cols, x.rows)
	}
	if e.Channel == x.channel && x.chosen && screen != nil {
		switch e.Kind {
		case event.KindOutput, event.KindStderr:
			screen.Write(e.Data)
			sinceKey += len(e.Data)
		case event.KindResize:
			screen.Resize(int(orDefault(e.Cols, 80)), int(orDefault(e.Rows, 24)))
		}
	}
	if mk, ok := markerOf(e); ok && len(x.markers) < maxMarkers {
		x.markers = append(x.markers, mk)
	}
	return screen, sinceKey
}

func (x *seekIndex) choose(ch uint32, cols, rows int) {
	x.chosen, x.channel, x.cols, x.rows = true, ch, cols, rows
}

func (x *seekIndex) finish(err error) {
	x.mu.Lock()
	x.done, x.err = true, err
	if err == nil {
		x.covered = max(x.covered, x.duration)
	}
	x.advance()
	x.mu.Unlock()
}

// markerOf returns the timeline marker an event makes, if any: commands,
// subsystems, file transfers, forwards, refusals, notes and the end.
func markerOf(e event.Event) (marker, bool) {
	t := float64(e.Offset) / float64(time.Millisecond)
	switch e.Kind {
	case event.KindSSHRequest:
		switch {
		case e.Denied:
			return marker{t, "denied", e.Op + " " + e.Text}, true
		case e.Op == "exec":
			return marker{t, "exec", e.Text}, true
		case e.Op == "subsystem":
			return marker{t, "subsystem", e.Text}, true
		}
	case event.KindSSHChannel:
		if e.Op == "direct-tcpip" || e.Denied {
			return marker{t, "forward", e.Op + " " + e.Text}, true
		}
	case event.KindFile:
		label := e.Op + " " + e.Text
		if len(e.Args) > 0 {
			label += " → " + e.Args[0]
		}
		return marker{t, "file", label}, true
	case event.KindNote:
		return marker{t, "note", e.Op + ": " + e.Text}, true
	case event.KindEnd:
		label := e.Op
		if e.Text != "" {
			label += ": " + e.Text
		}
		return marker{t, "end", label}, true
	}
	return marker{}, false
}

type chunkResult struct {
	evs []event.Event
	err error
}

// prefetch fetches and decodes chunks in order with fetchAhead in flight;
// chunk i's result arrives on the i-th channel.
func prefetch(ctx context.Context, rec *recorder.Recording, n int) []chan chunkResult {
	out := make([]chan chunkResult, n)
	for i := range out {
		out[i] = make(chan chunkResult, 1)
	}
	sem := make(chan struct{}, fetchAhead)
	go func() {
		for i := range n {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				for j := i; j < n; j++ {
					out[j] <- chunkResult{err: ctx.Err()}
				}
				return
			}
			go func() {
				evs, err := rec.ChunkEvents(ctx, i)
				out[i] <- chunkResult{evs, err}
			}()
		}
	}()
	// Release a slot as each result is taken.
	relay := make([]chan chunkResult, n)
	for i := range relay {
		relay[i] = make(chan chunkResult, 1)
	}
	go func() {
		for i := range n {
			r := <-out[i]
			<-sem
			relay[i] <- r
		}
	}()
	return relay
}

// indexCache keeps the seek indexes of recently opened recordings.
type indexCache struct {
	mu      sync.Mutex
	max     int
	entries map[string]*seekIndex
	order   []string
}

func newIndexCache(n int) *indexCache { return &indexCache{max: n, entries: map[string]*seekIndex{}} }

// get returns the index of a recording, starting its build with rec when
// there is none. The key includes the manifest hash.
func (c *indexCache) get(rec *recorder.Recording) *seekIndex {
	key := rec.Header().SessionID + "/" + rec.ManifestHash()
	c.mu.Lock()
	defer c.mu.Unlock()
	if x, ok := c.entries[key]; ok {
		x.mu.Lock()
		failed := x.done && x.err != nil
		x.mu.Unlock()
		if !failed {
			c.touch(key)
			return x
		}
	}
	m := rec.Manifest()
	x := newSeekIndex(m.EndedAt.Sub(m.StartedAt))
	c.entries[key] = x
	c.touch(key)
	for len(c.order) > c.max {
		delete(c.entries, c.order[0])
		c.order = c.order[1:]
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), indexTimeout)
		defer cancel()
		x.build(ctx, rec)
	}()
	return x
}

func (c *indexCache) touch(key string) {
	for i, k := range c.order {
		if k == key {
			c.order = append(c.order[:i], c.order[i+1:]...)
			break
		}
	}
	c.order = append(c.order, key)
}

// cursor reads a recording's events in order from a chunk on.
type cursor struct {
	rec   *recorder.Recording
	chunk int // next chunk to load
	evs   []event.Event
	pos   int
}

func newCursor(rec *recorder.Recording, chunk int) *cursor { return &cursor{rec: rec, chunk: chunk} }

// peek returns the next event without consuming it; ok is false at the end.
func (c *cursor) peek(ctx context.Context) (event.Event, bool, error) {
	for c.pos >= len(c.evs) {
		if c.chunk >= len(c.rec.Manifest().Chunks) {
			return event.Event{}, false, nil
		}
		evs, err := c.rec.ChunkEvents(ctx, c.chunk)
		if err != nil {
			return event.Event{}, false, err
		}
		c.chunk++
		c.evs, c.pos = evs, 0
	}
	return c.evs[c.pos], true, nil
}

func (c *cursor) skip() { c.pos++ }

// seekTo builds the screen at t from a keyframe and leaves the cursor on
// the first event after t.
func seekTo(ctx context.Context, rec *recorder.Recording, k keyframe, ch uint32, t time.Duration) (*vt.Screen, *cursor, error) {
	screen := vt.New(k.cols, k.rows)
	if k.snap != nil {
		screen.Write(k.snap)
	}
	cur := newCursor(rec, k.chunk)
	for {
		e, ok, err := cur.peek(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("seek: %w", err)
		}
		if !ok || e.Offset > t {
			return screen, cur, nil
		}
		cur.skip()
		if e.Channel != ch {
			continue
		}
		switch e.Kind {
		case event.KindOutput, event.KindStderr:
			screen.Write(e.Data)
		case event.KindResize:
			screen.Resize(int(orDefault(e.Cols, 80)), int(orDefault(e.Rows, 24)))
		case event.KindSSHRequest:
			if e.Op == "pty-req" && k.snap == nil {
				screen = vt.New(int(orDefault(e.Cols, 80)), int(orDefault(e.Rows, 24)))
			}
		}
	}
}

var errNotTerminal = errors.New("not a terminal recording")

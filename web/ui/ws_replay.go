package webui

import (
	"context"
	"encoding/base64"
	"errors"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/recorder"
	"github.com/custos-pam/custos/recorder/event"
	"github.com/custos-pam/custos/web"
)

// Websocket limits.
const (
	wsWriteTimeout = 10 * time.Second
	wsReadLimit    = 4 << 10
	// batchEvents and batchBytes bound one "events" message.
	batchEvents = 2000
	batchBytes  = 512 << 10
	pingEvery   = 30 * time.Second
)

// upgrader checks the Origin of every websocket upgrade against the UI's
// own origin; the session cookie was checked by the handler.
func (u *UI) upgrader() *websocket.Upgrader {
	return &websocket.Upgrader{
		ReadBufferSize: 4 << 10, WriteBufferSize: 64 << 10,
		CheckOrigin: func(r *http.Request) bool { return r.Header.Get("Origin") != "" && u.sameOrigin(r) },
	}
}

// wireEvent is an event as the pages receive it: t in milliseconds, k the
// kind's name, d the data in base64 (terminal bytes are not text).
type wireEvent struct {
	T      float64  `json:"t"`
	K      string   `json:"k"`
	Ch     uint32   `json:"ch,omitempty"`
	D      string   `json:"d,omitempty"`
	Op     string   `json:"op,omitempty"`
	Name   string   `json:"name,omitempty"`
	Text   string   `json:"text,omitempty"`
	Args   []string `json:"args,omitempty"`
	N      int64    `json:"n,omitempty"`
	Bytes  int64    `json:"bytes,omitempty"`
	Cols   uint32   `json:"cols,omitempty"`
	Rows   uint32   `json:"rows,omitempty"`
	Denied bool     `json:"denied,omitempty"`
}

func wire(e event.Event) wireEvent {
	w := wireEvent{T: float64(e.Offset) / float64(time.Millisecond), K: e.Kind.String(), Ch: e.Channel,
		Op: e.Op, Name: e.Name, Text: e.Text, Args: e.Args, N: e.N, Bytes: e.Bytes, Cols: e.Cols, Rows: e.Rows, Denied: e.Denied}
	if len(e.Data) > 0 {
		w.D = base64.StdEncoding.EncodeToString(e.Data)
	}
	return w
}

// wsConn serializes writes to a websocket.
type wsConn struct {
	mu sync.Mutex
	c  *websocket.Conn
}

func (w *wsConn) send(v any) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	_ = w.c.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
	return w.c.WriteJSON(v)
}

func (w *wsConn) ping() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.c.WriteControl(websocket.PingMessage, nil, time.Now().Add(wsWriteTimeout))
}

// replayRequest is a message from the player: seek to T (ms) or send the
// events up to Until (ms). ID names the seek the request belongs to.
type replayRequest struct {
	Op    string  `json:"op"`
	ID    int     `json:"id"`
	T     float64 `json:"t"`
	Until float64 `json:"until"`
}

// ms converts milliseconds, saturating: "until the end" is any large
// number.
func ms(f float64) time.Duration {
	const limit = float64(math.MaxInt64 / int64(time.Millisecond))
	if f >= limit {
		return math.MaxInt64
	}
	return time.Duration(f * float64(time.Millisecond))
}

// wsReplay streams a stored recording to the player. The read is audited
// (recorder.Open) before the upgrade; a caller who may not see the session
// gets a 403, audited, and no websocket.
func (u *UI) wsReplay(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("session")
	if !websocket.IsWebSocketUpgrade(r) || !u.sameOrigin(r) || r.Header.Get("Origin") == "" {
		web.WriteError(w, http.StatusForbidden, "bad_origin", "websocket upgrade from another origin refused")
		return
	}
	s, ok := u.authorize(w, r, id, access.ExportSession, "web replay")
	if !ok {
		return
	}
	if u.o.Recordings == nil {
		web.WriteError(w, http.StatusServiceUnavailable, "no_recorder", "recordings are not available on this broker")
		return
	}
	if s.State == broker.SessionLive {
		web.WriteError(w, http.StatusConflict, "live", "the session is still running: watch it live")
		return
	}
	p := principalFrom(r.Context())
	rec, err := u.o.Recordings.Open(r.Context(), s.ID, recorder.Access{Actor: p.User, Purpose: "web replay"})
	if err != nil {
		u.log.Warn("webui: open recording", "session", s.ID, "err", err)
		web.WriteError(w, http.StatusBadGateway, "recording_unavailable", "the recording cannot be opened: "+err.Error())
		return
	}
	c, err := u.upgrader().Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	c.SetReadLimit(wsReadLimit)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conn := &wsConn{c: c}
	go keepAlive(ctx, conn)
	rp := &replayer{u: u, conn: conn, rec: rec, session: s}
	if err := rp.run(ctx); err != nil && !isClosed(err) {
		_ = conn.send(map[string]string{"type": "error", "message": err.Error()})
	}
}

func keepAlive(ctx context.Context, conn *wsConn) {
	t := time.NewTicker(pingEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if conn.ping() != nil {
				return
			}
		}
	}
}

func isClosed(err error) bool {
	var ce *websocket.CloseError
	return errors.As(err, &ce) || errors.Is(err, websocket.ErrCloseSent)
}

// replayer is one player connection.
type replayer struct {
	u        *UI
	conn     *wsConn
	rec      *recorder.Recording
	session  broker.Session
	idx      *seekIndex
	channel  uint32
	terminal bool
	cur      *cursor
	id       int
}

func (rp *replayer) run(ctx context.Context) error {
	m := rp.rec.Manifest()
	h := rp.rec.Header()
	rp.terminal = h.Protocol != "postgres"
	meta := map[string]any{"type": "meta", "session": rp.u.row(rp.session), "header": h,
		"duration_ms": m.EndedAt.Sub(m.StartedAt).Milliseconds(), "chunks": len(m.Chunks),
		"state": m.State, "ended_by": m.EndedBy, "end_reason": m.EndReason, "terminal": rp.terminal}
	rp.cur = newCursor(rp.rec, 0)
	if rp.terminal {
		rp.idx = rp.u.indexes.get(rp.rec)
		ch, cols, rows, err := rp.idx.terminal(ctx)
		if err != nil {
			return err
		}
		rp.channel = ch
		meta["channel"], meta["cols"], meta["rows"] = ch, cols, rows
		go rp.announceIndex(ctx)
	}
	if err := rp.conn.send(meta); err != nil {
		return err
	}
	for {
		var req replayRequest
		if err := rp.conn.c.ReadJSON(&req); err != nil {
			return err
		}
		var err error
		switch req.Op {
		case "seek":
			err = rp.seek(ctx, req)
		case "next":
			err = rp.next(ctx, req)
		default:
			err = rp.conn.send(map[string]string{"type": "error", "message": "unknown op " + req.Op})
		}
		if err != nil {
			return err
		}
	}
}

// announceIndex tells the page the markers once the index is complete.
func (rp *replayer) announceIndex(ctx context.Context) {
	err := rp.idx.wait(ctx, func() bool { return rp.idx.done })
	if err != nil && ctx.Err() != nil {
		return
	}
	markers, keys, _ := rp.idx.state()
	msg := map[string]any{"type": "index", "markers": markers, "keyframes": keys}
	if err != nil {
		msg["error"] = err.Error()
	}
	_ = rp.conn.send(msg)
}

// seek answers with the screen at T and positions the stream after it.
func (rp *replayer) seek(ctx context.Context, req replayRequest) error {
	if !rp.terminal {
		return rp.conn.send(map[string]string{"type": "error", "message": errNotTerminal.Error()})
	}
	rp.id = req.ID
	t := max(ms(req.T), 0)
	started := time.Now()
	k, err := rp.idx.keyframeAt(ctx, t)
	if err != nil {
		return err
	}
	screen, cur, err := seekTo(ctx, rp.rec, k, rp.channel, t)
	if err != nil {
		return err
	}
	rp.cur = cur
	cols, rows := screen.Size()
	return rp.conn.send(map[string]any{"type": "frame", "id": req.ID, "t": req.T, "cols": cols, "rows": rows,
		"data": base64.StdEncoding.EncodeToString(screen.Snapshot()), "text": screen.Text(),
		"keyframe_ms": k.at.Milliseconds(), "took_ms": time.Since(started).Milliseconds()})
}

// next sends the events up to Until from the cursor, in bounded batches.
func (rp *replayer) next(ctx context.Context, req replayRequest) error {
	until := ms(req.Until)
	var out []wireEvent
	size := 0
	more, done := false, false
	for {
		e, ok, err := rp.cur.peek(ctx)
		if err != nil {
			return err
		}
		if !ok {
			done = true
			break
		}
		if e.Offset > until {
			break
		}
		if len(out) >= batchEvents || size >= batchBytes {
			more = true
			break
		}
		rp.cur.skip()
		if rp.terminal && e.Kind.Terminal() && e.Channel != rp.channel {
			continue
		}
		out = append(out, wire(e))
		size += len(e.Data) + len(e.Text) + 64
	}
	if out == nil {
		out = []wireEvent{}
	}
	return rp.conn.send(map[string]any{"type": "events", "id": req.ID, "events": out, "until": req.Until,
		"more": more, "done": done})
}

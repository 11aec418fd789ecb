package webui

import (
	"context"
	"encoding/base64"
	"net/http"
	"time"

	"github.com/gorilla/websocket"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/recorder"
	"github.com/custos-pam/custos/recorder/event"
	"github.com/custos-pam/custos/web"
)

// liveFlush is how long events are gathered before they are sent; well
// under the one second a watcher may lag.
const liveFlush = 50 * time.Millisecond

// wsLive streams a running session to a watcher: first the screen (or the
// latest statements) as it is now, then every event as it is recorded,
// then the end. Watching is a view of the recording and is audited.
func (u *UI) wsLive(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("session")
	if !websocket.IsWebSocketUpgrade(r) || !u.sameOrigin(r) || r.Header.Get("Origin") == "" {
		web.WriteError(w, http.StatusForbidden, "bad_origin", "websocket upgrade from another origin refused")
		return
	}
	s, ok := u.authorize(w, r, id, access.WatchSession, "live view")
	if !ok {
		return
	}
	if u.o.Live == nil || !u.o.Live.Has(id) {
		// Another replica may run it: the websocket goes there, and
		// that replica checks the caller again and audits the view.
		if u.o.API.Forward(w, r, s) {
			return
		}
		web.WriteError(w, http.StatusNotFound, "not_live", "session "+id+" is not running on this broker")
		return
	}
	p := principalFrom(r.Context())
	if _, err := u.o.Audit.Append(r.Context(), audit.Entry{Actor: p.User, Action: "session.recording.read", Target: s.Target,
		Outcome: broker.OutcomeSuccess, Reason: "live view",
		Details: map[string]any{"session_id": s.ID, "user": s.User, "purpose": "live view", "via": p.Via}}); err != nil {
		// A view that cannot be audited is refused.
		u.fail(w, err)
		return
	}
	sub, view, ok := u.o.Live.watch(id)
	if !ok {
		web.WriteError(w, http.StatusNotFound, "not_live", "session "+id+" ended")
		return
	}
	defer sub.Cancel()
	c, err := u.upgrader().Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	c.SetReadLimit(wsReadLimit)
	conn := &wsConn{c: c}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go keepAlive(ctx, conn)
	go func() {
		// Reads only notice the watcher leaving.
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				cancel()
				return
			}
		}
	}()

	recent := make([]wireEvent, len(view.recent))
	for i, e := range view.recent {
		recent[i] = wire(e)
	}
	hello := map[string]any{"type": "meta", "session": u.row(s), "header": view.header,
		"terminal": view.header.Protocol != "postgres", "channel": view.channel, "recent": recent,
		"can_terminate": u.o.API.CanTerminate(p)}
	if view.snapshot != nil {
		hello["cols"], hello["rows"] = view.cols, view.rows
		hello["data"] = base64.StdEncoding.EncodeToString(view.snapshot)
		hello["text"] = view.text
	}
	if conn.send(hello) != nil {
		return
	}
	if view.ended != nil {
		_ = conn.send(endMessage(*view.ended))
		return
	}
	u.pumpLive(ctx, conn, sub)
}

func endMessage(e event.Event) map[string]any {
	return map[string]any{"type": "end", "state": e.Op, "by": e.Name, "reason": e.Text,
		"t": float64(e.Offset) / float64(time.Millisecond)}
}

// pumpLive forwards a watcher's events in small batches until the session
// ends, the watcher falls behind, or the page goes away.
func (u *UI) pumpLive(ctx context.Context, conn *wsConn, sub *recorder.Subscription) {
	var batch []wireEvent
	flush := func() bool {
		if len(batch) == 0 {
			return true
		}
		err := conn.send(map[string]any{"type": "events", "events": batch})
		batch = batch[:0]
		return err == nil
	}
	tick := time.NewTicker(liveFlush)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-sub.Events():
			if e.Kind == event.KindEnd {
				if flush() {
					_ = conn.send(endMessage(e))
				}
				return
			}
			batch = append(batch, wire(e))
			if len(batch) >= batchEvents {
				if !flush() {
					return
				}
			}
		case <-tick.C:
			if !flush() {
				return
			}
		case <-sub.Gone():
			// Drain what was delivered before the recorder let go.
			for {
				select {
				case e := <-sub.Events():
					if e.Kind == event.KindEnd {
						if flush() {
							_ = conn.send(endMessage(e))
						}
						return
					}
					batch = append(batch, wire(e))
					continue
				default:
				}
				break
			}
			if flush() {
				_ = conn.send(map[string]string{"type": "lagged"})
			}
			return
		}
	}
}

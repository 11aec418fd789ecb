package slacktest

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// socketConn is the Socket Mode connection of the app, if connected.
type socketConn struct {
	conn *websocket.Conn
	wmu  sync.Mutex
}

func (c *socketConn) writeJSON(v any) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return c.conn.WriteJSON(v)
}

// serveSocket is the websocket URL apps.connections.open hands out. Each
// ticket opens one connection, which gets a hello, pings every
// PingInterval, and has its acks routed to SendSocket.
func (s *Server) serveSocket(w http.ResponseWriter, r *http.Request) {
	ticket := r.URL.Query().Get("ticket")
	s.mu.Lock()
	valid := s.tickets[ticket]
	delete(s.tickets, ticket)
	s.mu.Unlock()
	if !valid {
		http.Error(w, "invalid ticket", http.StatusUnauthorized)
		return
	}
	conn, err := s.up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &socketConn{conn: conn}
	s.mu.Lock()
	old := s.sock
	s.sock = c
	s.socketGen++
	s.mu.Unlock()
	if old != nil {
		old.conn.Close()
	}
	defer func() {
		s.mu.Lock()
		if s.sock == c {
			s.sock = nil
		}
		s.mu.Unlock()
		conn.Close()
	}()
	if err := c.writeJSON(map[string]any{"type": "hello", "num_connections": 1,
		"debug_info":      map[string]any{"host": "slacktest", "build_number": 1, "approximate_connection_time": 18060},
		"connection_info": map[string]any{"app_id": AppID}}); err != nil {
		return
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(s.o.PingInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if conn.WriteControl(websocket.PingMessage, []byte("ping"), time.Now().Add(5*time.Second)) != nil {
					return
				}
			}
		}
	}()
	for {
		var ack struct {
			EnvelopeID string          `json:"envelope_id"`
			Payload    json.RawMessage `json:"payload"`
		}
		if err := conn.ReadJSON(&ack); err != nil {
			return
		}
		s.mu.Lock()
		ch := s.acks[ack.EnvelopeID]
		delete(s.acks, ack.EnvelopeID)
		s.mu.Unlock()
		if ch != nil {
			p := ack.Payload
			if p == nil {
				p = json.RawMessage("null")
			}
			ch <- p
		}
	}
}

// SocketConnected reports whether an app holds a Socket Mode connection.
func (s *Server) SocketConnected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sock != nil
}

// ErrNoSocket is returned when no app is connected over Socket Mode.
var ErrNoSocket = errors.New("slacktest: no socket mode connection")

// SendSocket delivers a payload as an interactive envelope over the Socket
// Mode connection and waits for its ack, returning the ack's payload
// ("null" when none). retry is the envelope's retry_attempt.
func (s *Server) SendSocket(ctx context.Context, payload []byte, retry int) (json.RawMessage, error) {
	s.mu.Lock()
	c := s.sock
	id := s.newID("env-")
	ch := make(chan json.RawMessage, 1)
	s.acks[id] = ch
	s.mu.Unlock()
	if c == nil {
		return nil, ErrNoSocket
	}
	env := map[string]any{"envelope_id": id, "payload": json.RawMessage(payload), "type": "interactive",
		"accepts_response_payload": true, "retry_attempt": retry, "retry_reason": ""}
	if retry > 0 {
		env["retry_reason"] = "timeout"
	}
	if err := c.writeJSON(env); err != nil {
		return nil, err
	}
	select {
	case p := <-ch:
		return p, nil
	case <-ctx.Done():
		s.mu.Lock()
		delete(s.acks, id)
		s.mu.Unlock()
		return nil, ctx.Err()
	}
}

// Disconnect asks the connected app to reconnect, as Slack does before
// it rotates a connection.
func (s *Server) Disconnect() error {
	s.mu.Lock()
	c := s.sock
	s.mu.Unlock()
	if c == nil {
		return ErrNoSocket
	}
	return c.writeJSON(map[string]any{"type": "disconnect", "reason": "refresh_requested",
		"debug_info": map[string]any{"host": "slacktest"}})
}

package web

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/recorder"
)

// terminator ends a live session by id; the proxies implement it.
type terminator interface {
	Terminate(sessionID, reason string) bool
}

// SessionsAPI serves the recorded-session endpoints: list and search,
// verify, export, and terminating a live session.
type SessionsAPI struct {
	Auth            Authenticator
	Store           broker.Store
	Recorder        *recorder.Recorder
	Terminator      terminator
	Audit           *audit.Log
	IsSecurityAdmin func(user string) bool
}

// Register adds the routes to s.
func (a *SessionsAPI) Register(s *Server) {
	auth := func(h http.HandlerFunc) http.Handler { return RequireToken(a.Auth, h) }
	s.Handle("GET /api/v1/sessions", auth(a.list))
	s.Handle("GET /api/v1/sessions/{id}", auth(a.get))
	s.Handle("GET /api/v1/sessions/{id}/verify", auth(a.verify))
	s.Handle("GET /api/v1/sessions/{id}/export", auth(a.export))
	s.Handle("POST /api/v1/sessions/{id}/kill", auth(a.kill))
}

// list: filters user, target, protocol, state, since, until (RFC 3339) and
// contains (commands, SQL, file paths). Non-admins see only their own.
func (a *SessionsAPI) list(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	q := r.URL.Query()
	f := broker.SessionFilter{User: q.Get("user"), Target: q.Get("target"), Protocol: q.Get("protocol"),
		Contains: q.Get("contains"), Limit: 500}
	if s := q.Get("state"); s != "" {
		f.States = []broker.SessionState{broker.SessionState(s)}
	}
	for name, dst := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if v := q.Get(name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				WriteError(w, http.StatusBadRequest, "bad_time", name+" must be an RFC 3339 time")
				return
			}
			*dst = t
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			WriteError(w, http.StatusBadRequest, "bad_request", "limit must be a positive number")
			return
		}
		f.Limit = n
	}
	if !a.IsSecurityAdmin(p.User) {
		f.User = p.User
	}
	var out []broker.Session
	if err := a.Store.View(r.Context(), func(tx broker.Tx) error {
		var err error
		out, err = tx.ListSessions(f)
		return err
	}); err != nil {
		WriteError(w, http.StatusInternalServerError, "internal", "list sessions failed")
		return
	}
	if out == nil {
		out = []broker.Session{}
	}
	WriteJSON(w, http.StatusOK, out)
}

// session loads a session the caller may see: their own, or any for a
// security admin. A refusal is audited.
func (a *SessionsAPI) session(w http.ResponseWriter, r *http.Request, purpose string) (broker.Session, Principal, bool) {
	p, _ := PrincipalFrom(r.Context())
	id := r.PathValue("id")
	var s broker.Session
	err := a.Store.View(r.Context(), func(tx broker.Tx) error {
		var err error
		s, err = tx.GetSession(id)
		return err
	})
	if errors.Is(err, broker.ErrNotFound) {
		WriteError(w, http.StatusNotFound, "not_found", "no session "+id)
		return s, p, false
	}
	if err != nil {
		WriteError(w, http.StatusInternalServerError, "internal", "read session failed")
		return s, p, false
	}
	if s.User != p.User && !a.IsSecurityAdmin(p.User) {
		_, _ = a.Audit.Append(r.Context(), audit.Entry{Actor: p.User, Action: "session.recording.read", Target: s.Target,
			Outcome: broker.OutcomeDenied, Reason: "not the session's user or a security admin",
			Details: map[string]any{"session_id": id, "purpose": purpose}})
		WriteError(w, http.StatusForbidden, "forbidden", "you may only open your own sessions")
		return s, p, false
	}
	return s, p, true
}

func (a *SessionsAPI) get(w http.ResponseWriter, r *http.Request) {
	if s, _, ok := a.session(w, r, "metadata"); ok {
		WriteJSON(w, http.StatusOK, s)
	}
}

func (a *SessionsAPI) verify(w http.ResponseWriter, r *http.Request) {
	s, p, ok := a.session(w, r, "verify")
	if !ok {
		return
	}
	rep, err := a.Recorder.Verify(r.Context(), s.ID)
	if err != nil {
		WriteError(w, http.StatusBadGateway, "verify_failed", "verify: "+err.Error())
		return
	}
	outcome := broker.OutcomeSuccess
	if !rep.Intact {
		outcome = broker.OutcomeError
	}
	_, _ = a.Audit.Append(r.Context(), audit.Entry{Actor: p.User, Action: "session.verify", Target: s.Target,
		Outcome: outcome, Reason: rep.Verdict, Details: map[string]any{"session_id": s.ID}})
	WriteJSON(w, http.StatusOK, rep)
}

// export streams ?format=jsonl (the raw events) or asciicast (one terminal
// channel: ?channel=N, ?input=true to include keystrokes).
func (a *SessionsAPI) export(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	format := q.Get("format")
	if format != "jsonl" && format != "asciicast" {
		WriteError(w, http.StatusBadRequest, "bad_format", "format must be asciicast or jsonl")
		return
	}
	s, p, ok := a.session(w, r, "export "+format)
	if !ok {
		return
	}
	rec, err := a.Recorder.Open(r.Context(), s.ID, recorder.Access{Actor: p.User, Purpose: "export " + format})
	if err != nil {
		WriteError(w, http.StatusBadGateway, "recording_unavailable", err.Error())
		return
	}
	if format == "jsonl" {
		w.Header().Set("Content-Type", "application/x-ndjson")
		_ = rec.ExportJSONL(r.Context(), w)
		return
	}
	ch, _ := strconv.ParseUint(q.Get("channel"), 10, 32)
	opts := recorder.AsciicastOptions{Channel: uint32(ch), Input: q.Get("input") == "true"}
	// Render into memory first so a recording without terminal output
	// answers with an error instead of a truncated 200.
	var buf bytesBuffer
	if err := rec.ExportAsciicast(r.Context(), &buf, opts); err != nil {
		WriteError(w, http.StatusUnprocessableEntity, "no_terminal", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/x-asciicast")
	_, _ = w.Write(buf.b)
}

func (a *SessionsAPI) kill(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	id := r.PathValue("id")
	var in struct {
		Reason string `json:"reason"`
	}
	if err := DecodeJSON(r, &in); err != nil || in.Reason == "" {
		WriteError(w, http.StatusBadRequest, "reason_required", "terminating a session needs a reason")
		return
	}
	if !a.IsSecurityAdmin(p.User) {
		_, _ = a.Audit.Append(r.Context(), audit.Entry{Actor: p.User, Action: "session.terminate", Outcome: broker.OutcomeDenied,
			Reason: "not a security admin", Details: map[string]any{"session_id": id}})
		WriteError(w, http.StatusForbidden, "forbidden", "only security admins may terminate sessions")
		return
	}
	reason := "terminated by " + p.User + ": " + in.Reason
	if !a.Terminator.Terminate(id, reason) {
		WriteError(w, http.StatusNotFound, "not_live", "no live session "+id)
		return
	}
	_, _ = a.Audit.Append(r.Context(), audit.Entry{Actor: p.User, Action: "session.terminate", Outcome: broker.OutcomeSuccess,
		Reason: in.Reason, Details: map[string]any{"session_id": id}})
	WriteJSON(w, http.StatusOK, map[string]string{"terminated": id})
}

// bytesBuffer is a minimal in-memory writer.
type bytesBuffer struct{ b []byte }

func (b *bytesBuffer) Write(p []byte) (int, error) { b.b = append(b.b, p...); return len(p), nil }

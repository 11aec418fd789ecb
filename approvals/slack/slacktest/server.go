// Package slacktest is a local Slack for tests: an httptest server that
// speaks the Web API methods Custos uses (chat.postMessage, chat.update,
// chat.postEphemeral, conversations.open, conversations.history,
// conversations.replies, users.info, views.open, auth.test,
// apps.connections.open) with Slack's JSON shapes and ok:false errors,
// checks tokens, scopes and request shapes (Block Kit limits included),
// records what was posted, injects 429s and 5xx on demand, signs
// interaction payloads exactly as Slack does and POSTs them to an
// endpoint, and serves a Socket Mode websocket that delivers interactive
// envelopes and reads their acks.
//
// Point slack-go at it with slack.OptionAPIURL(server.APIURL()).
package slacktest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Workspace identifiers the emulator reports.
const (
	DefaultTeamID = "T0CUSTOS"
	BotUserID     = "U0BOT"
	BotID         = "B0BOT"
	AppID         = "A0CUSTOS"
)

// User is a workspace member.
type User struct {
	ID    string
	Name  string
	Email string
	// Deleted, Bot and Unconfirmed (email not confirmed) change what
	// users.info reports.
	Deleted, Bot, Unconfirmed bool
}

// Channel is a conversation the bot is a member of.
type Channel struct {
	ID      string
	Name    string
	Private bool
}

// Options configure a Server.
type Options struct {
	// BotToken (xoxb-…) is required on Web API calls.
	BotToken string
	// AppToken (xapp-…) opens Socket Mode connections. Default: none.
	AppToken string
	// SigningSecret signs interaction payloads.
	SigningSecret string
	// TeamID defaults to DefaultTeamID.
	TeamID string
	// Scopes granted to the bot token; nil grants every scope.
	Scopes   []string
	Users    []User
	Channels []Channel
	// TriggerTTL is how long a trigger_id may be used. Default: 3s, as
	// in Slack.
	TriggerTTL time.Duration
	// PingInterval is how often the Socket Mode server pings. Default: 1s.
	PingInterval time.Duration
}

// Failure is an injected failure of one Web API call.
type Failure struct {
	// Status is the HTTP status: 429 (with RetryAfter seconds) or a 5xx.
	// 0 with Error set answers 200 {"ok":false,"error":Error}.
	Status     int
	RetryAfter int
	Error      string
	// AfterEffect applies the call before failing, as when Slack
	// processed a request but the answer was lost.
	AfterEffect bool
}

// Call is one recorded Web API call.
type Call struct {
	Method string
	At     time.Time
	// Status is the HTTP status answered; Error the ok:false code, if any.
	Status int
	Error  string
	Params map[string]string
}

// Message is a posted message as it is now (after any chat.update).
type Message struct {
	Channel  string
	TS       string
	ThreadTS string
	Text     string
	Blocks   json.RawMessage
	Metadata *Metadata
	// Ephemeral messages are seen only by User.
	Ephemeral bool
	User      string
	// Edits counts chat.update calls applied.
	Edits    int
	PostedAt time.Time
}

// Metadata is message metadata.
type Metadata struct {
	EventType    string         `json:"event_type"`
	EventPayload map[string]any `json:"event_payload"`
}

// View is a modal opened with views.open.
type View struct {
	ID, Hash, User, CallbackID, PrivateMetadata, Title string
	Blocks                                             json.RawMessage
}

// Server is the emulator. Build it with New.
type Server struct {
	o   Options
	srv *httptest.Server
	up  websocket.Upgrader

	mu        sync.Mutex
	lastMicro int64
	seq       int
	messages  []*Message
	calls     []Call
	failures  map[string][]Failure
	triggers  map[string]trigger
	views     map[string]*View
	scopes    map[string]bool
	tickets   map[string]bool
	sock      *socketConn
	socketGen int
	acks      map[string]chan json.RawMessage
}

type trigger struct {
	user   string
	issued time.Time
	used   bool
}

// New starts an emulator; it stops when the test ends.
func New(tb testing.TB, o Options) *Server {
	tb.Helper()
	if o.TeamID == "" {
		o.TeamID = DefaultTeamID
	}
	if o.TriggerTTL == 0 {
		o.TriggerTTL = 3 * time.Second
	}
	if o.PingInterval == 0 {
		o.PingInterval = time.Second
	}
	s := &Server{o: o, failures: map[string][]Failure{}, triggers: map[string]trigger{}, views: map[string]*View{},
		scopes: map[string]bool{}, tickets: map[string]bool{}, acks: map[string]chan json.RawMessage{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/{method}", s.serveAPI)
	mux.HandleFunc("/link/", s.serveSocket)
	// Slack's Socket Mode endpoint accepts the Origin slack-go sends.
	s.up.CheckOrigin = func(*http.Request) bool { return true }
	s.srv = httptest.NewServer(mux)
	tb.Cleanup(s.Close)
	return s
}

// Close stops the server and any Socket Mode connection.
func (s *Server) Close() {
	s.mu.Lock()
	c := s.sock
	s.sock = nil
	s.mu.Unlock()
	if c != nil {
		c.conn.Close()
	}
	s.srv.Close()
}

// URL is the server's base URL.
func (s *Server) URL() string { return s.srv.URL }

// APIURL is the Web API base, for slack.OptionAPIURL and slack.api_url.
func (s *Server) APIURL() string { return s.srv.URL + "/api/" }

// Fail queues failures for the next calls of a Web API method.
func (s *Server) Fail(method string, fs ...Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures[method] = append(s.failures[method], fs...)
}

// Calls returns the recorded calls of a method ("" for all).
func (s *Server) Calls(method string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if method == "" || c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

// Messages returns the channel's messages, thread replies included, in
// the order posted. Ephemeral messages are not included.
func (s *Server) Messages(channel string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, m := range s.messages {
		if m.Channel == channel && !m.Ephemeral {
			out = append(out, *m)
		}
	}
	return out
}

// Ephemerals returns the ephemeral messages shown to a user.
func (s *Server) Ephemerals(user string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, m := range s.messages {
		if m.Ephemeral && m.User == user {
			out = append(out, *m)
		}
	}
	return out
}

// Views returns the modals opened, in order.
func (s *Server) Views() []View {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []View
	for _, v := range s.views {
		out = append(out, *v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ScopesUsed returns the scopes successful calls needed, sorted.
func (s *Server) ScopesUsed() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for sc := range s.scopes {
		out = append(out, sc)
	}
	sort.Strings(out)
	return out
}

// DMChannel is the ID of the bot's DM with a user.
func DMChannel(user string) string {
	return "D" + strings.TrimPrefix(strings.TrimPrefix(user, "U"), "W")
}

// request is one parsed Web API call.
type request struct {
	method string
	token  string
	form   map[string]string
	json   map[string]json.RawMessage
}

func (r *request) str(k string) string {
	if v, ok := r.form[k]; ok {
		return v
	}
	if raw, ok := r.json[k]; ok {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
		return string(raw)
	}
	return ""
}

// apiError is an ok:false answer.
type apiError struct {
	code  string
	extra map[string]any
}

func fail(code string) *apiError { return &apiError{code: code} }

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	req, perr := parseRequest(r)
	call := Call{At: time.Now(), Status: http.StatusOK}
	if req != nil {
		call.Method, call.Params = req.method, req.params()
	}
	defer func() {
		s.mu.Lock()
		s.calls = append(s.calls, call)
		s.mu.Unlock()
	}()
	if perr != nil {
		call.Error = perr.code
		writeJSON(w, http.StatusOK, errorBody(perr))
		return
	}
	h, known := methods[req.method]
	if !known {
		call.Error = "unknown_method"
		writeJSON(w, http.StatusOK, errorBody(fail("unknown_method")))
		return
	}
	if e := s.authorize(req, h); e != nil {
		call.Error = e.code
		writeJSON(w, http.StatusOK, errorBody(e))
		return
	}
	s.mu.Lock()
	var f *Failure
	if q := s.failures[req.method]; len(q) > 0 {
		f = &q[0]
		s.failures[req.method] = q[1:]
	}
	s.mu.Unlock()
	if f != nil && !f.AfterEffect {
		s.writeFailure(w, *f, &call)
		return
	}
	body, e := h.handle(s, req)
	if e == nil && h.scope != nil {
		if sc := h.scope(s, req); sc != "" {
			s.mu.Lock()
			s.scopes[sc] = true
			s.mu.Unlock()
		}
	}
	if f != nil {
		s.writeFailure(w, *f, &call)
		return
	}
	if e != nil {
		call.Error = e.code
		writeJSON(w, http.StatusOK, errorBody(e))
		return
	}
	body["ok"] = true
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) writeFailure(w http.ResponseWriter, f Failure, call *Call) {
	switch {
	case f.Status == http.StatusTooManyRequests:
		call.Status, call.Error = f.Status, "ratelimited"
		w.Header().Set("Retry-After", fmt.Sprint(f.RetryAfter))
		writeJSON(w, f.Status, map[string]any{"ok": false, "error": "ratelimited"})
	case f.Status >= 500:
		call.Status = f.Status
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(f.Status)
		fmt.Fprintf(w, "<html><body><h1>%d %s</h1></body></html>", f.Status, http.StatusText(f.Status))
	default:
		call.Error = f.Error
		writeJSON(w, http.StatusOK, errorBody(fail(f.Error)))
	}
}

// authorize checks the token type and the scope a call needs.
func (s *Server) authorize(r *request, h method) *apiError {
	switch {
	case r.token == "":
		return fail("not_authed")
	case h.appToken && r.token == s.o.BotToken, !h.appToken && s.o.AppToken != "" && r.token == s.o.AppToken:
		return fail("not_allowed_token_type")
	case h.appToken && (s.o.AppToken == "" || r.token != s.o.AppToken), !h.appToken && r.token != s.o.BotToken:
		return fail("invalid_auth")
	}
	if h.scope == nil || s.o.Scopes == nil {
		return nil
	}
	if sc := h.scope(s, r); sc != "" && !slices.Contains(s.o.Scopes, sc) {
		return &apiError{code: "missing_scope", extra: map[string]any{"needed": sc, "provided": strings.Join(s.o.Scopes, ",")}}
	}
	return nil
}

func (r *request) params() map[string]string {
	out := map[string]string{}
	for k, v := range r.form {
		if k != "token" {
			out[k] = v
		}
	}
	for k := range r.json {
		out[k] = r.str(k)
	}
	return out
}

// parseRequest reads a form or JSON call and its token, from the
// Authorization header or the token field, as Slack accepts both.
func parseRequest(r *http.Request) (*request, *apiError) {
	req := &request{method: r.PathValue("method"), form: map[string]string{}}
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		return req, fail("method_not_supported_for_channel_type")
	}
	if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		req.token = bearer
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case r.Method == http.MethodPost && ct == "application/json":
		// An empty body (apps.connections.open sends none) is no arguments.
		if err := json.NewDecoder(r.Body).Decode(&req.json); err != nil && !errors.Is(err, io.EOF) {
			return req, fail("invalid_json")
		}
	default:
		if err := r.ParseForm(); err != nil {
			return req, fail("invalid_form_data")
		}
		for k, v := range r.Form {
			if len(v) > 0 {
				req.form[k] = v[0]
			}
		}
		if req.token == "" {
			req.token = req.form["token"]
		}
	}
	return req, nil
}

func errorBody(e *apiError) map[string]any {
	out := map[string]any{"ok": false, "error": e.code}
	for k, v := range e.extra {
		out[k] = v
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// nextTS returns a fresh, increasing message timestamp. Call with mu held.
func (s *Server) nextTS() string {
	micro := max(time.Now().UnixMicro(), s.lastMicro+1)
	s.lastMicro = micro
	return fmt.Sprintf("%d.%06d", micro/1e6, micro%1e6)
}

// newID returns a fresh ID with a prefix. Call with mu held.
func (s *Server) newID(prefix string) string {
	s.seq++
	return fmt.Sprintf("%s%08d", prefix, s.seq)
}

func (s *Server) user(id string) (User, bool) {
	for _, u := range s.o.Users {
		if u.ID == id {
			return u, true
		}
	}
	return User{}, false
}

// channel resolves a channel ID (or a user ID, meaning the DM with them).
func (s *Server) channel(id string) (Channel, bool) {
	for _, c := range s.o.Channels {
		if c.ID == id {
			return c, true
		}
	}
	if strings.HasPrefix(id, "D") {
		for _, u := range s.o.Users {
			if DMChannel(u.ID) == id {
				return Channel{ID: id}, true
			}
		}
	}
	if u, ok := s.user(id); ok {
		return Channel{ID: DMChannel(u.ID)}, true
	}
	return Channel{}, false
}

func (s *Server) find(channel, ts string) *Message {
	for _, m := range s.messages {
		if m.Channel == channel && m.TS == ts && !m.Ephemeral {
			return m
		}
	}
	return nil
}

package slacktest

import (
	"encoding/base64"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// method is one Web API method.
type method struct {
	// appToken methods take the app-level token instead of the bot's.
	appToken bool
	// scope returns the bot scope a call needs, "" for none.
	scope  func(s *Server, r *request) string
	handle func(s *Server, r *request) (map[string]any, *apiError)
}

func scope(name string) func(*Server, *request) string {
	return func(*Server, *request) string { return name }
}

var methods = map[string]method{
	"auth.test":             {handle: (*Server).authTest},
	"apps.connections.open": {appToken: true, handle: (*Server).connectionsOpen},
	"chat.postMessage":      {scope: scope("chat:write"), handle: (*Server).postMessage},
	"chat.update":           {scope: scope("chat:write"), handle: (*Server).update},
	"chat.postEphemeral":    {scope: scope("chat:write"), handle: (*Server).postEphemeral},
	"conversations.open":    {scope: scope("im:write"), handle: (*Server).open},
	"conversations.history": {scope: historyScope, handle: (*Server).history},
	"conversations.replies": {scope: historyScope, handle: (*Server).replies},
	"users.info":            {scope: scope("users:read"), handle: (*Server).usersInfo},
	"views.open":            {handle: (*Server).viewsOpen},
}

// historyScope is the history scope for the kind of conversation read.
func historyScope(s *Server, r *request) string {
	s.mu.Lock()
	c, _ := s.channel(r.str("channel"))
	s.mu.Unlock()
	switch {
	case strings.HasPrefix(c.ID, "D"):
		return "im:history"
	case c.Private:
		return "groups:history"
	default:
		return "channels:history"
	}
}

func (s *Server) authTest(*request) (map[string]any, *apiError) {
	return map[string]any{"url": "https://custos-test.slack.com/", "team": "Custos Test", "user": "custos",
		"team_id": s.o.TeamID, "user_id": BotUserID, "bot_id": BotID, "is_enterprise_install": false}, nil
}

func (s *Server) connectionsOpen(*request) (map[string]any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ticket := s.newID("tkt")
	s.tickets[ticket] = true
	return map[string]any{"url": "ws" + strings.TrimPrefix(s.srv.URL, "http") + "/link/?ticket=" + ticket + "&app_id=" + AppID}, nil
}

var eventType = regexp.MustCompile(`^[a-zA-Z0-9_]{1,255}$`)

// content checks and returns a message's text, blocks and metadata.
func content(r *request) (string, json.RawMessage, *Metadata, *apiError) {
	text := r.str("text")
	var blocks json.RawMessage
	if b := r.str("blocks"); b != "" {
		blocks = json.RawMessage(b)
		if e := validateBlocks(blocks, false); e != nil {
			return "", nil, nil, e
		}
	}
	if text == "" && len(blocks) == 0 {
		return "", nil, nil, fail("no_text")
	}
	if len([]rune(text)) > 40000 {
		return "", nil, nil, fail("msg_too_long")
	}
	var md *Metadata
	if m := r.str("metadata"); m != "" {
		md = &Metadata{}
		if json.Unmarshal([]byte(m), md) != nil || !eventType.MatchString(md.EventType) {
			return "", nil, nil, fail("invalid_metadata_format")
		}
	}
	return text, blocks, md, nil
}

func (s *Server) postMessage(r *request) (map[string]any, *apiError) {
	text, blocks, md, e := content(r)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.channel(r.str("channel"))
	if !ok {
		return nil, fail("channel_not_found")
	}
	thread := r.str("thread_ts")
	if thread != "" && s.find(c.ID, thread) == nil {
		return nil, fail("thread_not_found")
	}
	m := &Message{Channel: c.ID, TS: s.nextTS(), ThreadTS: thread, Text: text, Blocks: blocks, Metadata: md, PostedAt: time.Now()}
	s.messages = append(s.messages, m)
	return map[string]any{"channel": c.ID, "ts": m.TS, "message": messageJSON(m, false)}, nil
}

func (s *Server) update(r *request) (map[string]any, *apiError) {
	text, blocks, _, e := content(r)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.channel(r.str("channel"))
	if !ok {
		return nil, fail("channel_not_found")
	}
	if r.str("ts") == "" {
		return nil, fail("invalid_arguments")
	}
	m := s.find(c.ID, r.str("ts"))
	if m == nil {
		return nil, fail("message_not_found")
	}
	m.Text, m.Blocks = text, blocks
	m.Edits++
	return map[string]any{"channel": c.ID, "ts": m.TS, "text": text, "message": messageJSON(m, false)}, nil
}

func (s *Server) postEphemeral(r *request) (map[string]any, *apiError) {
	text, blocks, _, e := content(r)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.channel(r.str("channel"))
	if !ok {
		return nil, fail("channel_not_found")
	}
	if _, ok := s.user(r.str("user")); !ok {
		return nil, fail("user_not_found")
	}
	m := &Message{Channel: c.ID, TS: s.nextTS(), Text: text, Blocks: blocks, Ephemeral: true, User: r.str("user"), PostedAt: time.Now()}
	s.messages = append(s.messages, m)
	return map[string]any{"message_ts": m.TS}, nil
}

func (s *Server) open(r *request) (map[string]any, *apiError) {
	users := strings.Split(r.str("users"), ",")
	if r.str("users") == "" {
		return nil, fail("users_list_not_supplied")
	}
	if len(users) != 1 {
		return nil, fail("not_enough_users") // group DMs are not emulated
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.user(users[0])
	if !ok {
		return nil, fail("user_not_found")
	}
	if u.Bot {
		return nil, fail("cannot_dm_bot")
	}
	return map[string]any{"channel": map[string]any{"id": DMChannel(u.ID), "is_im": true, "user": u.ID}}, nil
}

// cursorOffset decodes the emulator's cursors ("next:<offset>", base64).
func cursorOffset(c string) int {
	b, err := base64.StdEncoding.DecodeString(c)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimPrefix(string(b), "next:"))
	return n
}

func page(all []map[string]any, r *request) map[string]any {
	limit, _ := strconv.Atoi(r.str("limit"))
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	off := min(cursorOffset(r.str("cursor")), len(all))
	end := min(off+limit, len(all))
	out := map[string]any{"messages": all[off:end], "has_more": end < len(all)}
	next := ""
	if end < len(all) {
		next = base64.StdEncoding.EncodeToString([]byte("next:" + strconv.Itoa(end)))
	}
	out["response_metadata"] = map[string]any{"next_cursor": next}
	return out
}

// after reports whether ts is after oldest (or equal, when inclusive).
func after(ts, oldest string, inclusive bool) bool {
	if oldest == "" {
		return true
	}
	a, _ := strconv.ParseFloat(ts, 64)
	b, _ := strconv.ParseFloat(oldest, 64)
	return a > b || inclusive && a == b
}

func (s *Server) history(r *request) (map[string]any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.channel(r.str("channel"))
	if !ok {
		return nil, fail("channel_not_found")
	}
	meta := r.str("include_all_metadata") == "1" || r.str("include_all_metadata") == "true"
	inclusive := r.str("inclusive") == "1" || r.str("inclusive") == "true"
	var all []map[string]any
	for i := len(s.messages) - 1; i >= 0; i-- { // newest first
		m := s.messages[i]
		if m.Channel == c.ID && !m.Ephemeral && m.ThreadTS == "" && after(m.TS, r.str("oldest"), inclusive) {
			all = append(all, messageJSON(m, meta))
		}
	}
	return page(all, r), nil
}

func (s *Server) replies(r *request) (map[string]any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.channel(r.str("channel"))
	if !ok {
		return nil, fail("channel_not_found")
	}
	root := s.find(c.ID, r.str("ts"))
	if root == nil {
		return nil, fail("thread_not_found")
	}
	meta := r.str("include_all_metadata") == "1" || r.str("include_all_metadata") == "true"
	inclusive := r.str("inclusive") == "1" || r.str("inclusive") == "true"
	all := []map[string]any{messageJSON(root, meta)}
	for _, m := range s.messages { // oldest first
		if m.Channel == c.ID && !m.Ephemeral && m.ThreadTS == root.TS && after(m.TS, r.str("oldest"), inclusive) {
			all = append(all, messageJSON(m, meta))
		}
	}
	return page(all, r), nil
}

func (s *Server) usersInfo(r *request) (map[string]any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.str("user") == "" {
		return nil, fail("invalid_arguments")
	}
	u, ok := s.user(r.str("user"))
	if !ok {
		return nil, fail("user_not_found")
	}
	profile := map[string]any{"real_name": u.Name, "display_name": u.Name}
	// Slack includes the email only for tokens with users:read.email.
	if s.o.Scopes == nil || containsStr(s.o.Scopes, "users:read.email") {
		profile["email"] = u.Email
		if u.Email != "" {
			s.scopes["users:read.email"] = true
		}
	}
	return map[string]any{"user": map[string]any{
		"id": u.ID, "team_id": s.o.TeamID, "name": u.Name, "real_name": u.Name, "deleted": u.Deleted,
		"is_bot": u.Bot, "is_email_confirmed": !u.Unconfirmed, "profile": profile,
	}}, nil
}

func (s *Server) viewsOpen(r *request) (map[string]any, *apiError) {
	var view struct {
		Type            string          `json:"type"`
		Title           json.RawMessage `json:"title"`
		Submit          json.RawMessage `json:"submit"`
		Close           json.RawMessage `json:"close"`
		Blocks          json.RawMessage `json:"blocks"`
		CallbackID      string          `json:"callback_id"`
		PrivateMetadata string          `json:"private_metadata"`
	}
	raw := r.json["view"]
	if raw == nil {
		if v := r.str("view"); v != "" {
			raw = json.RawMessage(v)
		}
	}
	if raw == nil || json.Unmarshal(raw, &view) != nil {
		return nil, fail("invalid_arguments")
	}
	if view.Type != "modal" {
		return nil, fail("invalid_arguments")
	}
	title, e := textObject(view.Title, true, 24)
	if e != nil || title == "" {
		return nil, fail("invalid_arguments")
	}
	for _, t := range []json.RawMessage{view.Submit, view.Close} {
		if t != nil {
			if _, e := textObject(t, true, 24); e != nil {
				return nil, fail("invalid_arguments")
			}
		}
	}
	if len(view.PrivateMetadata) > 3000 || len(view.CallbackID) > 255 {
		return nil, fail("invalid_arguments")
	}
	if e := validateBlocks(view.Blocks, true); e != nil {
		return nil, e
	}
	if hasInput(view.Blocks) && view.Submit == nil {
		return nil, fail("invalid_arguments")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := r.str("trigger_id")
	t, ok := s.triggers[id]
	switch {
	case id == "" || !ok:
		return nil, fail("invalid_trigger_id")
	case t.used:
		return nil, fail("exchanged_trigger_id")
	case time.Since(t.issued) > s.o.TriggerTTL:
		return nil, fail("expired_trigger_id")
	}
	t.used = true
	s.triggers[id] = t
	v := &View{ID: s.newID("V"), Hash: s.newID("hash."), User: t.user, CallbackID: view.CallbackID,
		PrivateMetadata: view.PrivateMetadata, Title: title, Blocks: view.Blocks}
	s.views[v.ID] = v
	return map[string]any{"view": viewJSON(s.o.TeamID, v, nil)}, nil
}

func viewJSON(team string, v *View, values map[string]map[string]string) map[string]any {
	state := map[string]any{}
	for block, acts := range values {
		m := map[string]any{}
		for act, val := range acts {
			m[act] = map[string]any{"type": "plain_text_input", "value": val}
		}
		state[block] = m
	}
	return map[string]any{
		"id": v.ID, "team_id": team, "type": "modal", "blocks": v.Blocks, "private_metadata": v.PrivateMetadata,
		"callback_id": v.CallbackID, "state": map[string]any{"values": state}, "hash": v.Hash,
		"title": map[string]any{"type": "plain_text", "text": v.Title, "emoji": true}, "clear_on_close": false,
		"notify_on_close": false, "root_view_id": v.ID, "app_id": AppID, "bot_id": BotID, "previous_view_id": nil,
		"external_id": "", "app_installed_team_id": team,
	}
}

// messageJSON is a message as the Web API returns it.
func messageJSON(m *Message, withMetadata bool) map[string]any {
	out := map[string]any{"type": "message", "user": BotUserID, "bot_id": BotID, "app_id": AppID, "text": m.Text, "ts": m.TS, "team": DefaultTeamID}
	if m.Blocks != nil {
		out["blocks"] = m.Blocks
	}
	if m.ThreadTS != "" {
		out["thread_ts"] = m.ThreadTS
	}
	if withMetadata && m.Metadata != nil {
		out["metadata"] = m.Metadata
	}
	if m.Edits > 0 {
		out["edited"] = map[string]any{"user": BotUserID, "ts": m.TS}
	}
	return out
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

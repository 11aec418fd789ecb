package slacktest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// issueTrigger returns a fresh trigger_id for a user. Call with mu held.
func (s *Server) issueTrigger(user string) string {
	s.seq++
	id := fmt.Sprintf("%d.%d.%x", time.Now().Unix(), s.seq, sha256.Sum256([]byte(fmt.Sprint(s.seq, user))))[:40]
	s.triggers[id] = trigger{user: user, issued: time.Now()}
	return id
}

func (s *Server) userJSON(id string) map[string]any {
	u, _ := s.user(id)
	return map[string]any{"id": id, "username": u.Name, "name": u.Name, "team_id": s.o.TeamID}
}

func (s *Server) actionTS() string {
	micro := time.Now().UnixMicro()
	return fmt.Sprintf("%d.%06d", micro/1e6, micro%1e6)
}

// Click returns the block_actions payload Slack sends when user clicks
// the button with actionID on the message at channel/ts, as it is now. It
// fails when the message has no such button, so a test cannot click what
// a reader could not.
func (s *Server) Click(user, channel, ts, actionID string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.find(channel, ts)
	if m == nil {
		return nil, fmt.Errorf("slacktest: no message %s in %s", ts, channel)
	}
	for _, b := range m.Buttons() {
		if b.ActionID == actionID {
			return s.blockActions(user, m, b), nil
		}
	}
	return nil, fmt.Errorf("slacktest: message %s in %s has no button %q", ts, channel, actionID)
}

// Action describes a block_actions payload built by hand, for payloads
// no message offers (forgeries, removed buttons).
type Action struct {
	User, Channel, MessageTS, ActionID, Value string
}

// BlockActions builds a block_actions payload for any action, with a fresh
// trigger_id.
func (s *Server) BlockActions(a Action) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.find(a.Channel, a.MessageTS)
	if m == nil {
		m = &Message{Channel: a.Channel, TS: a.MessageTS}
	}
	return s.blockActions(a.User, m, Button{BlockID: "custos_actions", ActionID: a.ActionID, Value: a.Value, Text: a.ActionID})
}

func (s *Server) blockActions(user string, m *Message, b Button) []byte {
	act := map[string]any{"action_id": b.ActionID, "block_id": b.BlockID, "type": "button", "action_ts": s.actionTS(),
		"text": map[string]any{"type": "plain_text", "text": b.Text, "emoji": true}}
	if b.Value != "" {
		act["value"] = b.Value
	}
	if b.URL != "" {
		act["url"] = b.URL
	}
	if b.Style != "" {
		act["style"] = b.Style
	}
	p := map[string]any{
		"type": "block_actions", "user": s.userJSON(user), "api_app_id": AppID, "token": "deprecatedVerificationToken",
		"container":  map[string]any{"type": "message", "message_ts": m.TS, "channel_id": m.Channel, "is_ephemeral": false},
		"trigger_id": s.issueTrigger(user), "team": map[string]any{"id": s.o.TeamID, "domain": "custos-test"},
		"enterprise": nil, "is_enterprise_install": false, "channel": map[string]any{"id": m.Channel, "name": "approvals"},
		"message": messageJSON(m, false), "state": map[string]any{"values": map[string]any{}},
		"response_url": s.srv.URL + "/actions/" + s.o.TeamID + "/" + m.TS, "actions": []any{act},
	}
	b2, _ := json.Marshal(p)
	return b2
}

// Submit returns the view_submission payload Slack sends when user
// submits an opened modal with the given input values (block ID → action
// ID → value).
func (s *Server) Submit(user, viewID string, values map[string]map[string]string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.views[viewID]
	if !ok {
		return nil, fmt.Errorf("slacktest: no view %s", viewID)
	}
	if v.User != user {
		return nil, fmt.Errorf("slacktest: view %s was opened for %s, not %s", viewID, v.User, user)
	}
	p := map[string]any{
		"type": "view_submission", "team": map[string]any{"id": s.o.TeamID, "domain": "custos-test"},
		"user": s.userJSON(user), "api_app_id": AppID, "token": "deprecatedVerificationToken",
		"trigger_id": s.issueTrigger(user), "view": viewJSON(s.o.TeamID, v, values), "response_urls": []any{},
		"is_enterprise_install": false, "enterprise": nil,
	}
	b, _ := json.Marshal(p)
	return b, nil
}

// Signed is an interaction request as Slack sends it.
type Signed struct {
	Body      []byte
	Timestamp string
	Signature string
}

// SignOption changes how a request is signed.
type SignOption func(*signing)

type signing struct {
	at     time.Time
	secret string
	sig    string
}

// At signs with a timestamp other than now.
func At(t time.Time) SignOption { return func(o *signing) { o.at = t } }

// WithSecret signs with another secret, as a forger would.
func WithSecret(secret string) SignOption { return func(o *signing) { o.secret = secret } }

// WithSignature sends this X-Slack-Signature instead of the computed one.
func WithSignature(sig string) SignOption { return func(o *signing) { o.sig = sig } }

// Sign encodes a payload as Slack's form body (payload=<json>) and signs
// it: v0= hex HMAC-SHA256 of "v0:<timestamp>:<body>" with the signing
// secret.
func (s *Server) Sign(payload []byte, opts ...SignOption) Signed {
	o := signing{at: time.Now(), secret: s.o.SigningSecret}
	for _, f := range opts {
		f(&o)
	}
	body := []byte(url.Values{"payload": {string(payload)}}.Encode())
	ts := strconv.FormatInt(o.at.Unix(), 10)
	sig := o.sig
	if sig == "" {
		sig = Signature(o.secret, ts, body)
	}
	return Signed{Body: body, Timestamp: ts, Signature: sig}
}

// Signature is Slack's request signature.
func Signature(secret, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "v0:%s:", timestamp)
	mac.Write(body)
	return "v0=" + hex.EncodeToString(mac.Sum(nil))
}

// Response is an endpoint's answer to an interaction.
type Response struct {
	Status int
	Body   []byte
}

// Send POSTs a signed interaction to endpoint as Slack does.
func (s *Server) Send(ctx context.Context, endpoint string, r Signed) (Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(r.Body))
	if err != nil {
		return Response{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", "Slackbot 1.0 (+https://api.slack.com/robots)")
	req.Header.Set("X-Slack-Request-Timestamp", r.Timestamp)
	req.Header.Set("X-Slack-Signature", r.Signature)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return Response{Status: resp.StatusCode, Body: body}, err
}

// Deliver signs a payload and POSTs it to endpoint.
func (s *Server) Deliver(ctx context.Context, endpoint string, payload []byte, opts ...SignOption) (Response, error) {
	return s.Send(ctx, endpoint, s.Sign(payload, opts...))
}

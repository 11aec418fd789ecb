package slack

import (
	"encoding/json"
	"testing"
)

const clickJSON = `{"type":"block_actions","user":{"id":"U0BOB","team_id":"T0CUSTOS"},"team":{"id":"T0CUSTOS"},
"trigger_id":"1700000000.1.abc","channel":{"id":"C0APPROVALS"},"container":{"channel_id":"C0APPROVALS","message_ts":"1.2"},
"actions":[{"action_id":"custos_approve","value":"req_x","action_ts":"1700000000.000100"}]}`

const submitJSON = `{"type":"view_submission","user":{"id":"U0CAROL"},"team":{"id":"T0CUSTOS"},"trigger_id":"t2",
"view":{"id":"V1","hash":"h1","callback_id":"custos_deny","private_metadata":"req_x",
"state":{"values":{"reason":{"reason":{"type":"plain_text_input","value":"no"}}}}}}`

func TestParseInteraction(t *testing.T) {
	cases := []struct {
		name    string
		raw     string
		wantErr bool
		check   func(t *testing.T, in interaction)
	}{
		{name: "click", raw: clickJSON, check: func(t *testing.T, in interaction) {
			if in.User != "U0BOB" || in.Team != "T0CUSTOS" || in.ActionID != actionApprove || in.Value != "req_x" || in.Channel != "C0APPROVALS" || in.requestID() != "req_x" {
				t.Errorf("parsed %+v", in)
			}
		}},
		{name: "submission", raw: submitJSON, check: func(t *testing.T, in interaction) {
			if in.CallbackID != callbackDeny || in.Reason != "no" || in.requestID() != "req_x" || in.Channel != "" {
				t.Errorf("parsed %+v", in)
			}
		}},
		{name: "not json", raw: `payload=x`, wantErr: true},
		{name: "no type", raw: `{"user":{"id":"U1"}}`, wantErr: true},
		{name: "no user", raw: `{"type":"block_actions"}`, wantErr: true},
		{name: "user id with markup", raw: `{"type":"block_actions","user":{"id":"U1<x>"}}`, wantErr: true},
		{name: "lower-case user id", raw: `{"type":"block_actions","user":{"id":"u0bob"}}`, wantErr: true},
		{name: "bad channel id", raw: `{"type":"block_actions","user":{"id":"U1"},"channel":{"id":"#general"}}`, wantErr: true},
		{name: "oversized value", raw: `{"type":"block_actions","user":{"id":"U1"},"actions":[{"value":"` + string(make([]byte, 300)) + `"}]}`, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in, err := parseInteraction([]byte(tc.raw))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if tc.check != nil {
				tc.check(t, in)
			}
		})
	}
}

func TestDeliveryKey(t *testing.T) {
	a, _ := parseInteraction([]byte(clickJSON))
	b, _ := parseInteraction([]byte(clickJSON))
	if a.Key != b.Key {
		t.Fatal("the same delivery has two keys")
	}
	var p map[string]any
	_ = json.Unmarshal([]byte(clickJSON), &p)
	p["trigger_id"] = "1700000000.2.def"
	other, _ := json.Marshal(p)
	c, _ := parseInteraction(other)
	if c.Key == a.Key {
		t.Fatal("another click has the same key")
	}
	// Without a trigger ID the payload bytes identify the delivery.
	d1, _ := parseInteraction([]byte(`{"type":"block_actions","user":{"id":"U1"},"actions":[{"action_id":"x","value":"1"}]}`))
	d2, _ := parseInteraction([]byte(`{"type":"block_actions","user":{"id":"U1"},"actions":[{"action_id":"x","value":"2"}]}`))
	if d1.Key == d2.Key {
		t.Fatal("different payloads without trigger IDs share a key")
	}
}

// FuzzParseInteraction: interaction payloads are untrusted bytes (signed,
// but parsed before anything else looks at them). Parsing never panics,
// and what it accepts has a plausible user ID and a key.
func FuzzParseInteraction(f *testing.F) {
	for _, s := range []string{clickJSON, submitJSON, `{}`, `[]`, `{"type":"block_actions","user":{"id":"U1"},"actions":[]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		in, err := parseInteraction(raw)
		if err != nil {
			return
		}
		if !slackID(in.User) || in.Type == "" || len(in.Key) != 64 {
			t.Fatalf("accepted %+v", in)
		}
	})
}

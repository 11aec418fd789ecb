package slacktest

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
)

func newTestServer(t *testing.T, scopes []string) (*Server, *slack.Client) {
	s := New(t, Options{BotToken: "xoxb-t", SigningSecret: "secret", Scopes: scopes, TriggerTTL: 200 * time.Millisecond,
		Users: []User{{ID: "U1", Name: "one", Email: "one@x.test"}}, Channels: []Channel{{ID: "C1"}}})
	return s, slack.New("xoxb-t", slack.OptionAPIURL(s.APIURL()))
}

// TestSignatureIsSlacks: what the emulator signs, slack-go's verifier (the
// one the broker uses) accepts; anything else it refuses.
func TestSignatureIsSlacks(t *testing.T) {
	s, _ := newTestServer(t, nil)
	verify := func(r Signed) error {
		h := http.Header{}
		h.Set("X-Slack-Request-Timestamp", r.Timestamp)
		h.Set("X-Slack-Signature", r.Signature)
		sv, err := slack.NewSecretsVerifier(h, "secret")
		if err != nil {
			return err
		}
		_, _ = sv.Write(r.Body)
		return sv.Ensure()
	}
	if err := verify(s.Sign([]byte(`{"type":"block_actions"}`))); err != nil {
		t.Fatalf("valid signature refused: %v", err)
	}
	if err := verify(s.Sign([]byte(`{}`), WithSecret("other"))); !errors.Is(err, slack.ErrInvalidSignature) {
		t.Errorf("wrong secret: %v", err)
	}
	if err := verify(s.Sign([]byte(`{}`), At(time.Now().Add(-6*time.Minute)))); !errors.Is(err, slack.ErrExpiredTimestamp) {
		t.Errorf("old timestamp: %v", err)
	}
	if got := s.Sign([]byte(`{"a":"b c"}`)).Body; string(got) != "payload=%7B%22a%22%3A%22b+c%22%7D" {
		t.Errorf("body = %s", got)
	}
}

func TestWebAPIErrors(t *testing.T) {
	ctx := context.Background()
	s, api := newTestServer(t, []string{"chat:write"})
	code := func(err error) string {
		var se slack.SlackErrorResponse
		if errors.As(err, &se) {
			return se.Err
		}
		if err != nil {
			return err.Error()
		}
		return ""
	}
	header := `[{"type":"header","text":{"type":"plain_text","text":"` + strings.Repeat("x", 151) + `"}}]`
	for _, tc := range []struct {
		name string
		call func() error
		want string
	}{
		{"bad token", func() error {
			_, _, err := slack.New("xoxb-wrong", slack.OptionAPIURL(s.APIURL())).PostMessageContext(ctx, "C1", slack.MsgOptionText("x", false))
			return err
		}, "invalid_auth"},
		{"no token", func() error {
			_, _, err := slack.New("", slack.OptionAPIURL(s.APIURL())).PostMessageContext(ctx, "C1", slack.MsgOptionText("x", false))
			return err
		}, "not_authed"},
		{"unknown channel", func() error {
			_, _, err := api.PostMessageContext(ctx, "C404", slack.MsgOptionText("x", false))
			return err
		}, "channel_not_found"},
		{"no text", func() error { _, _, err := api.PostMessageContext(ctx, "C1"); return err }, "no_text"},
		{"header too long", func() error {
			var blocks slack.Blocks
			if err := blocks.UnmarshalJSON([]byte(header)); err != nil {
				return err
			}
			_, _, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("x", false), slack.MsgOptionBlocks(blocks.BlockSet...))
			return err
		}, "invalid_blocks"},
		{"update of a missing message", func() error {
			_, _, _, err := api.UpdateMessageContext(ctx, "C1", "1.000001", slack.MsgOptionText("x", false))
			return err
		}, "message_not_found"},
		{"scope not granted", func() error { _, err := api.GetUserInfoContext(ctx, "U1"); return err }, "missing_scope"},
		{"unknown trigger", func() error {
			_, err := api.OpenViewContext(ctx, "nope", slack.ModalViewRequest{Type: slack.VTModal,
				Title: slack.NewTextBlockObject("plain_text", "t", false, false)})
			return err
		}, "invalid_trigger_id"},
	} {
		if got := code(tc.call()); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}

	s.Fail("chat.postMessage", Failure{Status: 429, RetryAfter: 7}, Failure{Status: 503})
	_, _, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("x", false))
	var rl *slack.RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfter != 7*time.Second {
		t.Errorf("429: %v", err)
	}
	_, _, err = api.PostMessageContext(ctx, "C1", slack.MsgOptionText("x", false))
	var sc slack.StatusCodeError
	if !errors.As(err, &sc) || sc.Code != 503 {
		t.Errorf("503: %v", err)
	}
	if n := len(s.Messages("C1")); n != 0 {
		t.Errorf("%d messages posted by failed calls", n)
	}
}

func TestTriggersExpireAndAreSingleUse(t *testing.T) {
	ctx := context.Background()
	s, api := newTestServer(t, nil)
	_, ts, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("x", false),
		slack.MsgOptionBlocks(slack.NewActionBlock("a", slack.NewButtonBlockElement("go", "v", slack.NewTextBlockObject("plain_text", "Go", false, false)))))
	if err != nil {
		t.Fatal(err)
	}
	modal := slack.ModalViewRequest{Type: slack.VTModal, Title: slack.NewTextBlockObject("plain_text", "t", false, false)}
	trigger := func() string {
		p, err := s.Click("U1", "C1", ts, "go")
		if err != nil {
			t.Fatal(err)
		}
		i := strings.Index(string(p), `"trigger_id":"`) + len(`"trigger_id":"`)
		return string(p)[i : i+strings.Index(string(p)[i:], `"`)]
	}
	id := trigger()
	if _, err := api.OpenViewContext(ctx, id, modal); err != nil {
		t.Fatal(err)
	}
	if _, err := api.OpenViewContext(ctx, id, modal); err == nil || err.Error() != "exchanged_trigger_id" {
		t.Errorf("reused trigger: %v", err)
	}
	id = trigger()
	time.Sleep(250 * time.Millisecond)
	if _, err := api.OpenViewContext(ctx, id, modal); err == nil || err.Error() != "expired_trigger_id" {
		t.Errorf("expired trigger: %v", err)
	}
	if _, err := s.Click("U1", "C1", ts, "missing"); err == nil {
		t.Error("clicked a button the message does not have")
	}
}

package slack

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
)

// runSocketMode holds a Socket Mode connection (opened with the app-level
// token through apps.connections.open) and feeds interactive envelopes to
// the same handler as the HTTP endpoint, acknowledging each one. The
// connection is Slack's own authenticated websocket, so there is no
// signature to check; replay detection and everything after it apply.
func (s *Slack) runSocketMode(ctx context.Context) {
	client := socketmode.New(s.api, socketmode.OptionLog(debugLog{s.log}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		wait := time.Second
		for {
			err := client.RunContext(ctx)
			if ctx.Err() != nil {
				return
			}
			s.log.Error("slack socket mode stopped; reconnecting", "err", errText(err), "in", wait)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(wait*2, 5*time.Minute)
		}
	}()
	for {
		select {
		case <-ctx.Done():
			<-done
			return
		case evt := <-client.Events:
			s.onSocketEvent(ctx, client, evt)
		}
	}
}

func (s *Slack) onSocketEvent(ctx context.Context, client *socketmode.Client, evt socketmode.Event) {
	switch evt.Type {
	case socketmode.EventTypeInteractive:
		if evt.Request == nil {
			return
		}
		rep := s.handle(ctx, "socket", evt.Request.Payload)
		var err error
		if rep.body != nil {
			err = client.AckCtx(ctx, evt.Request.EnvelopeID, rep.body)
		} else {
			err = client.AckCtx(ctx, evt.Request.EnvelopeID, nil)
		}
		if err != nil {
			s.log.Warn("slack socket mode ack failed", "err", err)
		}
	case socketmode.EventTypeEventsAPI, socketmode.EventTypeSlashCommand:
		// Not subscribed to; acknowledge so Slack does not retry.
		if evt.Request != nil {
			_ = client.AckCtx(ctx, evt.Request.EnvelopeID, nil)
		}
	case socketmode.EventTypeConnected:
		s.log.Info("slack socket mode connected")
	case socketmode.EventTypeConnectionError:
		var err error
		if ce, ok := evt.Data.(*slack.ConnectionErrorEvent); ok {
			err = ce.ErrorObj
		}
		s.log.Warn("slack socket mode connection failed; retrying", "err", errText(err))
	case socketmode.EventTypeInvalidAuth:
		s.log.Error("slack socket mode: app_token refused")
	}
}

// debugLog sends the Socket Mode client's own (debug-only) logging to slog.
type debugLog struct{ log *slog.Logger }

func (d debugLog) Output(_ int, msg string) error {
	d.log.Debug(strings.TrimSpace(msg))
	return nil
}

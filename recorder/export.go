package recorder

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/custos-pam/custos/recorder/asciicast"
	"github.com/custos-pam/custos/recorder/event"
)

// TerminalChannels returns the channels that carry terminal data, in
// order of first appearance.
func (rec *Recording) TerminalChannels(ctx context.Context) ([]uint32, error) {
	var chs []uint32
	for e, err := range rec.Events(ctx) {
		if err != nil {
			return nil, err
		}
		if (e.Kind.Terminal() || e.Kind == event.KindResize) && !slices.Contains(chs, e.Channel) {
			chs = append(chs, e.Channel)
		}
	}
	return chs, nil
}

// AsciicastOptions select what ExportAsciicast writes.
type AsciicastOptions struct {
	// Channel is the terminal channel to export. Default: 0, the first
	// channel with terminal data (the SSH proxy numbers channels from 1).
	Channel uint32
	// Input adds the client's keystrokes as "i" events. Default: false
	// (output and resizes only, what the user saw).
	Input bool
}

// ExportAsciicast writes one terminal channel as an asciicast v2 file that
// asciinema plays. Times count from the channel's first event; the header
// carries the terminal size and type from the channel's pty request.
func (rec *Recording) ExportAsciicast(ctx context.Context, w io.Writer, opts AsciicastOptions) error {
	h := rec.header
	ch, pick := opts.Channel, opts.Channel == 0
	var enc *asciicast.Encoder
	var origin time.Duration
	hdr := asciicast.Header{Width: 80, Height: 24, Env: map[string]string{}}
	begin := func(off time.Duration) error {
		origin = off
		hdr.Timestamp = h.StartedAt.Add(off).Unix()
		hdr.Title = fmt.Sprintf("%s@%s %s channel %d", h.User, h.Target, h.SessionID, ch)
		var err error
		enc, err = asciicast.NewEncoder(w, hdr)
		return err
	}
	for e, err := range rec.Events(ctx) {
		if err != nil {
			return err
		}
		if pick && (e.Kind.Terminal() || e.Kind == event.KindResize || e.Kind == event.KindSSHRequest && e.Op == "pty-req") {
			ch, pick = e.Channel, false
		}
		if pick || e.Channel != ch {
			continue
		}
		switch {
		case e.Kind == event.KindSSHRequest && e.Op == "pty-req" && enc == nil:
			if e.Cols > 0 && e.Rows > 0 {
				hdr.Width, hdr.Height = int(e.Cols), int(e.Rows)
			}
			if e.Name != "" {
				hdr.Env["TERM"] = e.Name
			}
		case e.Kind == event.KindResize && enc == nil:
			hdr.Width, hdr.Height = int(e.Cols), int(e.Rows)
		case e.Kind == event.KindResize:
			if err := enc.Resize(e.Offset-origin, e.Cols, e.Rows); err != nil {
				return err
			}
		case e.Kind == event.KindOutput || e.Kind == event.KindStderr || e.Kind == event.KindInput && opts.Input:
			if enc == nil {
				if err := begin(e.Offset); err != nil {
					return err
				}
			}
			var err error
			if e.Kind == event.KindInput {
				err = enc.Input(e.Offset-origin, e.Data)
			} else {
				err = enc.Output(e.Offset-origin, e.Data)
			}
			if err != nil {
				return err
			}
		}
	}
	if enc == nil {
		if opts.Channel != 0 {
			return fmt.Errorf("recorder: export asciicast: channel %d has no terminal output", opts.Channel)
		}
		return fmt.Errorf("recorder: export asciicast: %s has no terminal output", h.SessionID)
	}
	return enc.Close()
}

// PlayOptions control Play.
type PlayOptions struct {
	// Channel is the terminal channel. Default: the first with output.
	Channel uint32
	// Speed multiplies playback speed. Default: 1.
	Speed float64
	// MaxIdle caps pauses between outputs. Default: 0, no cap; SkipIdle
	// sets it to one second.
	MaxIdle  time.Duration
	SkipIdle bool
}

// Play replays a terminal channel's output to w in real time (scaled by
// Speed, pauses capped by MaxIdle) until the recording ends or ctx does.
func (rec *Recording) Play(ctx context.Context, w io.Writer, opts PlayOptions) error {
	if opts.Speed <= 0 {
		opts.Speed = 1
	}
	if opts.SkipIdle && opts.MaxIdle == 0 {
		opts.MaxIdle = time.Second
	}
	ch, pick := opts.Channel, opts.Channel == 0
	started := false
	var last time.Duration
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for e, err := range rec.Events(ctx) {
		if err != nil {
			return err
		}
		if e.Kind != event.KindOutput && e.Kind != event.KindStderr {
			continue
		}
		if pick {
			ch, pick = e.Channel, false
		}
		if e.Channel != ch {
			continue
		}
		if started {
			gap := e.Offset - last
			if opts.MaxIdle > 0 && gap > opts.MaxIdle {
				gap = opts.MaxIdle
			}
			if d := time.Duration(float64(gap) / opts.Speed); d > 0 {
				timer.Reset(d)
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-timer.C:
				}
			}
		}
		started, last = true, e.Offset
		if _, err := w.Write(e.Data); err != nil {
			return fmt.Errorf("recorder: play: %w", err)
		}
	}
	if !started {
		return fmt.Errorf("recorder: play: %s has no terminal output", rec.header.SessionID)
	}
	return nil
}

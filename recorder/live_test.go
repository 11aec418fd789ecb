package recorder

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/custos-pam/custos/recorder/event"
)

// TestSubscribeLateWatcher: a subscriber who joins after more output than
// the ring keeps sees the terminal's size and exactly the latest
// LiveOutputMax bytes of its channel (not another channel's, not input),
// the structured events so far, then every event as recorded with its
// recording offset, then the end; the session then leaves the live set.
func TestSubscribeLateWatcher(t *testing.T) {
	r := newEnv(t, nil).recorder()
	w, err := r.Start(context.Background(), testHeader("ses_live"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []event.Event{
		{Kind: event.KindSSHChannel, Channel: 1, Op: "session"},
		{Kind: event.KindSSHRequest, Channel: 1, Op: "pty-req", Name: "xterm", Cols: 132, Rows: 40},
		{Kind: event.KindResize, Channel: 1, Cols: 100, Rows: 30},
	} {
		if err := w.Record(e); err != nil {
			t.Fatal(err)
		}
	}
	var all bytes.Buffer
	for i := range 30000 {
		line := fmt.Appendf(nil, "line %05d\r\n", i)
		all.Write(line)
		if err := w.Output(1, line); err != nil {
			t.Fatal(err)
		}
		if err := w.Input(1, []byte("k")); err != nil {
			t.Fatal(err)
		}
		if err := w.Output(2, []byte("other channel\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Stderr(1, []byte("oops\r\n")); err != nil {
		t.Fatal(err)
	}
	all.WriteString("oops\r\n")

	sub, ok := r.Subscribe("ses_live", 16)
	if !ok {
		t.Fatal("live session not found")
	}
	v := sub.View()
	if !v.Terminal || v.Channel != 1 || v.Cols != 100 || v.Rows != 30 || v.Ended != nil {
		t.Fatalf("view: terminal %v channel %d %dx%d ended %v", v.Terminal, v.Channel, v.Cols, v.Rows, v.Ended)
	}
	if want := all.Bytes()[all.Len()-LiveOutputMax:]; !bytes.Equal(v.Output, want) {
		t.Fatalf("output: %d bytes ending %q, want the last %d ending %q", len(v.Output), tail(v.Output), len(want), tail(want))
	}
	if len(v.Recent) != 3 || v.Recent[1].Op != "pty-req" || v.Recent[2].Kind != event.KindResize {
		t.Fatalf("recent: %+v", v.Recent)
	}

	if err := w.Output(1, []byte("$ ")); err != nil {
		t.Fatal(err)
	}
	if err := w.Note("test", "hello"); err != nil {
		t.Fatal(err)
	}
	if err := w.Terminate("sam", "done watching"); err != nil {
		t.Fatal(err)
	}
	var got []event.Event
	for e := range sub.Events() {
		got = append(got, e)
		if e.Kind == event.KindEnd {
			break
		}
	}
	if len(got) != 3 || string(got[0].Data) != "$ " || got[1].Text != "hello" ||
		got[2].Op != "terminated" || got[2].Name != "sam" || got[2].Text != "done watching" {
		t.Fatalf("events: %+v", got)
	}
	if got[0].Offset <= 0 || got[1].Offset < got[0].Offset || got[2].Offset < got[1].Offset {
		t.Fatalf("offsets: %v %v %v", got[0].Offset, got[1].Offset, got[2].Offset)
	}
	select {
	case <-sub.Gone():
	case <-time.After(time.Second):
		t.Fatal("subscription not gone after the end")
	}
	if _, ok := r.Subscribe("ses_live", 16); ok {
		t.Fatal("an ended session can still be subscribed")
	}
	// The recording holds the same events the subscriber saw.
	drain(t, r)
	evs := readAll(t, r, "ses_live")
	if end := evs[len(evs)-1]; end.Kind != event.KindEnd || end.Offset != got[2].Offset {
		t.Fatalf("recorded end %+v, watched end at %v", end, got[2].Offset)
	}
}

// TestSubscribeSlowWatcher: a subscriber that stops reading is dropped;
// the recording never waits for it, and another subscriber keeps going.
func TestSubscribeSlowWatcher(t *testing.T) {
	r := newEnv(t, nil).recorder()
	w, err := r.Start(context.Background(), testHeader("ses_slow"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	slow, _ := r.Subscribe("ses_slow", 4)
	fast, _ := r.Subscribe("ses_slow", 4)
	done := make(chan error, 1)
	go func() {
		for i := range 1000 {
			if err := w.Output(1, []byte{byte(i)}); err != nil {
				done <- err
				return
			}
			<-fast.Events()
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("recording waited for a slow subscriber")
	}
	select {
	case <-slow.Gone():
	default:
		t.Fatal("slow subscriber not dropped")
	}
	if n := len(slow.Events()); n != 4 {
		t.Fatalf("slow subscriber kept %d events, want its 4 buffered", n)
	}
	select {
	case <-fast.Gone():
		t.Fatal("a subscriber that keeps up was dropped")
	default:
	}
	fast.Cancel()
	select {
	case <-fast.Gone():
	default:
		t.Fatal("cancel did not end the subscription")
	}
}

// TestLiveViewPostgres: a PostgreSQL session has no terminal; its late
// subscriber sees the latest statements, at most 500.
func TestLiveViewPostgres(t *testing.T) {
	r := newEnv(t, nil).recorder()
	h := testHeader("ses_pg_live")
	h.Protocol = "postgres"
	w, err := r.Start(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 600 {
		if err := w.Query(fmt.Sprintf("SELECT %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Output(0, []byte("row data")); err != nil {
		t.Fatal(err)
	}
	sub, _ := r.Subscribe("ses_pg_live", 1)
	defer sub.Cancel()
	v := sub.View()
	if v.Terminal || len(v.Output) != 0 {
		t.Fatalf("postgres session with a terminal: %+v", v)
	}
	if len(v.Recent) != 500 || v.Recent[0].Text != "SELECT 100" || v.Recent[499].Text != "SELECT 599" {
		t.Fatalf("recent: %d, first %q last %q", len(v.Recent), v.Recent[0].Text, v.Recent[len(v.Recent)-1].Text)
	}
}

func tail(b []byte) []byte { return b[max(len(b)-16, 0):] }

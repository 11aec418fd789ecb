package cli

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"
)

// progress shows a long transfer or check on the terminal: the time so
// far and, for transfers, the bytes and the share of the total when the
// broker announced it. It writes only when stderr is a terminal, so
// scripts and pipes see nothing of it.
type progress struct {
	w     io.Writer
	label string
	total int64
	start time.Time
	n     atomic.Int64
	stopc chan struct{}
	wg    sync.WaitGroup
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// startProgress starts reporting on stderr every half second, or returns
// nil when stderr is not a terminal. total is the expected byte count:
// 0 for a check that moves no bytes, -1 when unknown.
func (g *globals) startProgress(label string, total int64) *progress {
	if !isTerminal(g.stderr) {
		return nil
	}
	return newProgress(g.stderr, label, total, 500*time.Millisecond)
}

func newProgress(w io.Writer, label string, total int64, every time.Duration) *progress {
	p := &progress{w: w, label: label, total: total, start: time.Now(), stopc: make(chan struct{})}
	p.wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.stopc:
				return
			case <-t.C:
				p.draw()
			}
		}
	})
	return p
}

// Write counts b; a progress is an io.Writer to tee a body through.
func (p *progress) Write(b []byte) (int, error) {
	if p != nil {
		p.n.Add(int64(len(b)))
	}
	return len(b), nil
}

func (p *progress) draw() {
	elapsed := time.Since(p.start).Truncate(time.Second)
	n := p.n.Load()
	switch {
	case p.total > 0:
		fmt.Fprintf(p.w, "\r%s: %s of %s (%d%%), %s ", p.label, byteSize(n), byteSize(p.total), n*100/p.total, elapsed)
	case p.total < 0:
		fmt.Fprintf(p.w, "\r%s: %s, %s ", p.label, byteSize(n), elapsed)
	default:
		fmt.Fprintf(p.w, "\r%s: %s ", p.label, elapsed)
	}
}

// stop ends the report and clears its line.
func (p *progress) stop() {
	if p == nil {
		return
	}
	close(p.stopc)
	p.wg.Wait()
	fmt.Fprint(p.w, "\r\033[K")
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

package cli

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestProgress: a transfer reports bytes and share of the total while it
// runs, and clears its line at the end; nothing shows off a terminal.
func TestProgress(t *testing.T) {
	var out lockedBuffer
	p := newProgress(&out, "export", 4<<20, 10*time.Millisecond)
	if _, err := p.Write(make([]byte, 2<<20)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "export: 2.0 MiB of 4.0 MiB (50%)") {
		if time.Now().After(deadline) {
			t.Fatalf("no progress line: %q", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.stop()
	if !strings.HasSuffix(out.String(), "\r\033[K") {
		t.Fatalf("line not cleared: %q", out.String())
	}
	var quiet bytes.Buffer
	g := &globals{stderr: &quiet}
	if q := g.startProgress("verify", 0); q != nil {
		t.Fatal("progress on a buffer that is no terminal")
	}
}

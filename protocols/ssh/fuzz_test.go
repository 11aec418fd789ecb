package sshproxy

import (
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// FuzzPTYRequest decodes untrusted pty-req and window-change payloads as
// the proxy does and clamps them: the size is always within bounds, and
// what is forwarded decodes to the same clamped size.
func FuzzPTYRequest(f *testing.F) {
	f.Add(ssh.Marshal(&ptyRequest{Term: "xterm-256color", Cols: 80, Rows: 24, Modes: "\x00"}))
	f.Add(ssh.Marshal(&ptyRequest{Term: "xterm", Cols: 65535, Rows: 65535, Width: 1 << 31, Height: 1 << 20}))
	f.Add(ssh.Marshal(&windowChange{Cols: 1 << 31, Rows: 70000}))
	f.Add([]byte{0, 0, 0, 5, 'x'})
	f.Fuzz(func(t *testing.T, payload []byte) {
		var m ptyRequest
		if ssh.Unmarshal(payload, &m) == nil {
			m.Cols, m.Rows, m.Width, m.Height = clampPTY(m.Cols, m.Rows, m.Width, m.Height)
			var fwd ptyRequest
			if err := ssh.Unmarshal(ssh.Marshal(&m), &fwd); err != nil || fwd != m {
				t.Fatalf("forwarded pty-req %+v decodes to %+v, %v", m, fwd, err)
			}
			checkPTYBounds(t, m.Cols, m.Rows, m.Width, m.Height)
		}
		var w windowChange
		if ssh.Unmarshal(payload, &w) == nil {
			w.Cols, w.Rows, w.Width, w.Height = clampPTY(w.Cols, w.Rows, w.Width, w.Height)
			var fwd windowChange
			if err := ssh.Unmarshal(ssh.Marshal(&w), &fwd); err != nil || fwd != w {
				t.Fatalf("forwarded window-change %+v decodes to %+v, %v", w, fwd, err)
			}
			checkPTYBounds(t, w.Cols, w.Rows, w.Width, w.Height)
		}
	})
}

func checkPTYBounds(t *testing.T, cols, rows, width, height uint32) {
	t.Helper()
	if cols > MaxPTYCols || rows > MaxPTYRows || width > maxPTYPixels || height > maxPTYPixels {
		t.Fatalf("clamped size %dx%d (%dx%d px) out of bounds", cols, rows, width, height)
	}
}

// FuzzParseLogin splits untrusted SSH user fields into login and target:
// a target is never empty and never contains '@', and the parts rebuild
// the field.
func FuzzParseLogin(f *testing.F) {
	for _, s := range []string{"web-1", "deploy@web-1", "a@b@web-1", "@web-1", "deploy@", "", "\x00@\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, field string) {
		login, target, err := parseLogin(field)
		if err != nil {
			return
		}
		if target == "" || strings.Contains(target, "@") {
			t.Fatalf("%q: target %q", field, target)
		}
		rebuilt := target
		if login != "" {
			rebuilt = login + "@" + target
		}
		if rebuilt != field {
			t.Fatalf("%q split into %q and %q", field, login, target)
		}
	})
}

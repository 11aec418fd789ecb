package sshproxy

import (
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/recorder/event"
)

// defaultEnv is the environment a client may set when the role lists none.
var defaultEnv = []string{"TERM", "LANG", "LC_*"}

// Terminal sizes a client asks for (pty-req, window-change) are clamped to
// these before they are recorded or reach the target, so a 65535x65535
// request cannot make the target, the recording's players or the web UI's
// terminal emulator allocate gigabytes. The largest screens in use are far
// smaller (a 5K display in a 6-pixel font is about 850 columns).
const (
	MaxPTYCols = 1000
	MaxPTYRows = 500
	// maxPTYPixels is what the kernel's struct winsize holds.
	maxPTYPixels = 1<<16 - 1
)

// clampPTY bounds a requested terminal size in characters and pixels.
func clampPTY(cols, rows, width, height uint32) (uint32, uint32, uint32, uint32) {
	return min(cols, MaxPTYCols), min(rows, MaxPTYRows), min(width, maxPTYPixels), min(height, maxPTYPixels)
}

// Wire shapes of session channel requests (RFC 4254 section 6).
type (
	ptyRequest struct {
		Term          string
		Cols, Rows    uint32
		Width, Height uint32
		Modes         string
	}
	windowChange struct {
		Cols, Rows    uint32
		Width, Height uint32
	}
	envRequest struct {
		Name, Value string
	}
	stringRequest struct {
		Value string
	}
)

// serveClientRequests applies policy to the client's channel requests and
// forwards the allowed ones. When the channel closes on the client's side,
// the target's channel is closed too.
func (c *sessionChannel) serveClientRequests(reqs <-chan *ssh.Request) {
	defer func() {
		close(c.clientGone)
		_ = c.up.Close()
	}()
	s := c.s
	for req := range reqs {
		s.Touch()
		ev := event.Event{Kind: event.KindSSHRequest, Channel: c.num, Op: req.Type}
		switch req.Type {
		case "pty-req":
			var m ptyRequest
			if ssh.Unmarshal(req.Payload, &m) != nil {
				c.reply(req, false)
				continue
			}
			m.Cols, m.Rows, m.Width, m.Height = clampPTY(m.Cols, m.Rows, m.Width, m.Height)
			ev.Name, ev.Cols, ev.Rows = m.Term, m.Cols, m.Rows
			if !s.Role.ShellAllowed() {
				c.deny(req, ev, "custos: role "+s.Role.Name+" does not allow a terminal")
				continue
			}
			if c.recordOrFail(req, ev) {
				c.pty.Store(true)
				req.Payload = ssh.Marshal(&m)
				c.forward(req)
			}
		case "window-change":
			var m windowChange
			if ssh.Unmarshal(req.Payload, &m) != nil {
				ev.Denied = true
				_ = s.Record(ev)
				c.reply(req, false)
				continue
			}
			m.Cols, m.Rows, m.Width, m.Height = clampPTY(m.Cols, m.Rows, m.Width, m.Height)
			ev = event.Event{Kind: event.KindResize, Channel: c.num, Cols: m.Cols, Rows: m.Rows}
			if c.recordOrFail(req, ev) {
				req.Payload = ssh.Marshal(&m)
				c.forward(req)
			}
		case "env":
			var m envRequest
			if ssh.Unmarshal(req.Payload, &m) != nil {
				c.reply(req, false)
				continue
			}
			ev.Name, ev.Text = m.Name, m.Value
			if !envAllowed(s.Role.Env, m.Name) {
				// Clients send env quietly; refuse just as quietly.
				ev.Denied = true
				_ = s.Record(ev)
				c.reply(req, false)
				continue
			}
			if c.recordOrFail(req, ev) {
				c.forward(req)
			}
		case "shell", "exec", "subsystem":
			c.start(req, ev)
		case "signal":
			var m stringRequest
			if ssh.Unmarshal(req.Payload, &m) == nil {
				ev.Name = m.Value
			}
			if c.recordOrFail(req, ev) {
				c.forward(req)
			}
		case "break":
			if c.recordOrFail(req, ev) {
				c.forward(req)
			}
		case "x11-req":
			c.deny(req, ev, "custos: X11 forwarding is not allowed")
		case "auth-agent-req@openssh.com":
			c.deny(req, ev, "custos: agent forwarding is not allowed")
		default:
			ev.Denied = true
			_ = s.Record(ev)
			c.reply(req, false)
		}
	}
}

// start handles shell, exec and subsystem: it decides how the channel is
// recorded, forwards the request and, when the target accepts, starts the
// relay. A channel gets one of them.
func (c *sessionChannel) start(req *ssh.Request, ev event.Event) {
	select {
	case <-c.started:
		c.reply(req, false)
		return
	default:
	}
	if c.s.Context().Err() != nil {
		// The session is ending: no command starts on the target.
		c.reply(req, false)
		return
	}
	// Decided by this request alone: an earlier refused exec leaves no
	// observer behind for a shell.
	c.files = nil
	switch req.Type {
	case "exec":
		var m stringRequest
		if ssh.Unmarshal(req.Payload, &m) != nil {
			c.reply(req, false)
			return
		}
		ev.Text = m.Value
		c.files = c.classifyExec(m.Value)
	case "subsystem":
		var m stringRequest
		if ssh.Unmarshal(req.Payload, &m) != nil {
			c.reply(req, false)
			return
		}
		ev.Text = m.Value
		if m.Value != "sftp" {
			c.deny(req, ev, "custos: subsystem "+m.Value+" is not allowed")
			return
		}
		c.files = newFileChannel(c.s, c.num, "sftp", newSFTPObserver(c.s, c.num, c.s.digestContents()))
	}
	if !c.recordOrFail(req, ev) {
		return
	}
	c.starting.Store(true)
	ok, err := c.up.SendRequest(req.Type, true, req.Payload)
	ok = ok && err == nil
	// The answer goes out before the relay can finish and close the
	// channel under it.
	c.reply(req, ok)
	if ok {
		c.startRelay()
	}
	c.decideOnce.Do(func() { close(c.decided) })
}

// classifyExec picks how an exec channel is recorded. A command line that
// is exactly a legacy scp server (see parseSCPServer) gets an scp observer
// on top of its record; anything else — rsync servers included, which have
// no observer — is a command whose bytes are recorded as they are.
func (c *sessionChannel) classifyExec(cmd string) *fileChannel {
	srv, ok := parseSCPServer(cmd)
	if !ok {
		return nil
	}
	return newFileChannel(c.s, c.num, "scp", srv.observer(c.s, c.num, c.s.digestContents()))
}

// recordOrFail records ev; when recording fails the request is refused and
// false returned.
func (c *sessionChannel) recordOrFail(req *ssh.Request, ev event.Event) bool {
	if err := c.s.Record(ev); err != nil {
		c.reply(req, false)
		return false
	}
	return true
}

// deny refuses a request with a message on the client's stderr, records it
// and audits it.
func (c *sessionChannel) deny(req *ssh.Request, ev event.Event, msg string) {
	ev.Denied = true
	_ = c.s.Record(ev)
	c.s.refused(c.num, req.Type, ev.Text, msg)
	nl := "\n"
	if c.pty.Load() {
		nl = "\r\n"
	}
	_, _ = c.client.Stderr().Write([]byte(msg + nl))
	c.reply(req, false)
}

func (c *sessionChannel) forward(req *ssh.Request) {
	ok, err := c.up.SendRequest(req.Type, req.WantReply, req.Payload)
	c.reply(req, ok && err == nil)
}

func (c *sessionChannel) reply(req *ssh.Request, ok bool) {
	if req.WantReply {
		_ = req.Reply(ok, nil)
	}
}

// envAllowed reports whether a client may set the variable. Patterns end
// in '*' to match a prefix.
func envAllowed(allow []string, name string) bool {
	if len(allow) == 0 {
		allow = defaultEnv
	}
	for _, a := range allow {
		if p, ok := strings.CutSuffix(a, "*"); ok {
			if strings.HasPrefix(name, p) {
				return true
			}
		} else if a == name {
			return true
		}
	}
	return false
}

package sshproxy

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker/metrics"
	"github.com/custos-pam/custos/recorder/event"
)

// sessionChannel relays one "session" channel between client and target.
type sessionChannel struct {
	s      *session
	num    uint32
	client ssh.Channel
	up     ssh.Channel
	pty    atomic.Bool

	// files records an SFTP or scp channel (see fileChannel); nil, the
	// channel's bytes are recorded as they are. It is decided by the
	// channel's shell, exec or subsystem request before any byte moves.
	files *fileChannel

	started   chan struct{} // closed when the relay starts
	startOnce sync.Once
	// starting is set before a shell, exec or subsystem request goes to
	// the target; decided is closed once its answer is known.
	starting   atomic.Bool
	decided    chan struct{}
	decideOnce sync.Once
	upDone     chan struct{} // closed when the target's requests end
	exited     chan struct{} // closed on exit-status or exit-signal
	exitOnce   sync.Once
	exitMu     sync.Mutex
	exitType   string
	exitMsg    []byte
	ended      atomic.Bool // the client side was closed by a termination
	outWG      sync.WaitGroup
	bytesIn    atomic.Int64 // client to target
	bytesOut   atomic.Int64 // target to client
	clientGone chan struct{}
}

func (s *session) handleSessionChannel(nc ssh.NewChannel) {
	num := s.nextChan.Add(1)
	up, upReqs, err := s.up.OpenChannel("session", nil)
	if err != nil {
		_ = s.Record(event.Event{Kind: event.KindSSHChannel, Channel: num, Op: "session", Name: "failed: " + err.Error()})
		_ = nc.Reject(ssh.ConnectionFailed, "custos: the target refused the session: "+err.Error())
		return
	}
	cl, clReqs, err := nc.Accept()
	if err != nil {
		up.Close()
		return
	}
	c := &sessionChannel{s: s, num: num, client: cl, up: up,
		started: make(chan struct{}), decided: make(chan struct{}), upDone: make(chan struct{}), exited: make(chan struct{}),
		clientGone: make(chan struct{})}
	if err := s.Record(event.Event{Kind: event.KindSSHChannel, Channel: num, Op: "session"}); err != nil {
		cl.Close()
		up.Close()
		return
	}
	s.addChannel(c)
	defer s.removeChannel(c)
	go c.forwardTargetRequests(upReqs)
	go c.serveClientRequests(clReqs)
	c.teardown()
}

// teardown waits for the channel to finish and closes it in order: the
// target's exit status, the drained output, then CloseWrite and Close to
// the client. It never waits for the stdin copier.
func (c *sessionChannel) teardown() {
	select {
	case <-c.started:
	case <-c.upDone:
		// A quick command can run, print and close the target's channel
		// before its exec request's answer reaches the relay: wait for the
		// answer so its output is still relayed.
		if c.starting.Load() {
			select {
			case <-c.decided:
			case <-c.clientGone:
			}
		}
	case <-c.clientGone:
		// Requests are served in order, so a start request has been
		// answered by the time the client's request stream ends.
	}
	relaying := false
	select {
	case <-c.started:
		relaying = true
	default:
	}
	if relaying {
		c.outWG.Wait()
	}
	select {
	case <-c.exited:
	case <-c.upDone:
	case <-c.clientGone:
	}
	// files is set before the relay starts; without a relay it saw nothing.
	if relaying && c.files != nil {
		_ = c.files.close()
	}
	if !c.ended.Load() {
		c.exitMu.Lock()
		typ, msg := c.exitType, c.exitMsg
		c.exitMu.Unlock()
		if typ != "" {
			_, _ = c.client.SendRequest(typ, false, msg)
		}
		_ = c.client.CloseWrite()
		_ = c.client.Close()
	}
	_ = c.up.Close()
	_ = c.s.Record(event.Event{Kind: event.KindSSHChannel, Channel: c.num, Op: "close",
		N: c.bytesOut.Load(), Args: []string{fmt.Sprintf("in=%d", c.bytesIn.Load()), fmt.Sprintf("out=%d", c.bytesOut.Load())}})
}

// notifyEnd shows a termination message on the client's terminal and
// closes the channel, ahead of the connection being cut.
func (c *sessionChannel) notifyEnd(msg string) {
	if c.ended.Swap(true) {
		return
	}
	if c.pty.Load() {
		msg = "\r\n" + strings.ReplaceAll(msg, "\n", "\r\n") + "\r\n"
	} else {
		msg += "\n"
	}
	_, _ = c.client.Stderr().Write([]byte(msg))
	_, _ = c.client.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{255}))
	_ = c.client.CloseWrite()
	_ = c.client.Close()
}

// startRelay starts the copiers once, after the request that gives the
// channel its purpose succeeded upstream.
func (c *sessionChannel) startRelay() {
	c.startOnce.Do(func() {
		c.outWG.Add(2)
		go c.copyToClient(false)
		go c.copyToClient(true)
		go c.copyToUpstream()
		close(c.started)
	})
}

// copyToClient relays the target's stdout (or stderr) to the client,
// recording each read before it is written.
func (c *sessionChannel) copyToClient(stderr bool) {
	defer c.outWG.Done()
	var rb relayBuf
	defer rb.release()
	var src io.Reader = c.up
	var dst io.Writer = c.client
	kind := event.KindOutput
	if stderr {
		src, dst, kind = c.up.Stderr(), c.client.Stderr(), event.KindStderr
	}
	for {
		buf := rb.buf()
		n, rerr := src.Read(buf)
		if n > 0 {
			c.s.Relayed(metrics.ToClient, n)
			var err error
			if stderr || c.files == nil {
				err = c.s.Data(kind, c.num, buf[:n])
			} else {
				err = c.files.fromTarget(buf[:n])
			}
			if err != nil {
				return
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
			c.bytesOut.Add(int64(n))
		}
		rb.used(n)
		if rerr != nil {
			return
		}
	}
}

// copyToUpstream relays the client's stdin to the target. At the client's
// EOF it half-closes the target side.
func (c *sessionChannel) copyToUpstream() {
	var rb relayBuf
	defer rb.release()
	for {
		buf := rb.buf()
		n, rerr := c.client.Read(buf)
		if n > 0 {
			c.s.Relayed(metrics.ToTarget, n)
			var err error
			if c.files == nil {
				err = c.s.Data(event.KindInput, c.num, buf[:n])
			} else {
				err = c.files.fromClient(buf[:n])
			}
			if err != nil {
				return
			}
			if _, err := c.up.Write(buf[:n]); err != nil {
				return
			}
			c.bytesIn.Add(int64(n))
		}
		rb.used(n)
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				_ = c.up.CloseWrite()
			}
			return
		}
	}
}

// forwardTargetRequests relays the target's channel requests. The exit
// status is held back until the output has drained (see teardown).
func (c *sessionChannel) forwardTargetRequests(reqs <-chan *ssh.Request) {
	defer close(c.upDone)
	for req := range reqs {
		switch req.Type {
		case "exit-status", "exit-signal":
			ev := event.Event{Kind: event.KindSSHRequest, Channel: c.num, Op: req.Type}
			if req.Type == "exit-status" {
				var m struct{ Status uint32 }
				if ssh.Unmarshal(req.Payload, &m) == nil {
					ev.N = int64(m.Status)
				}
			} else {
				var m struct {
					Signal     string
					CoreDumped bool
					Msg        string
					Lang       string
				}
				if ssh.Unmarshal(req.Payload, &m) == nil {
					ev.Name, ev.Text = m.Signal, m.Msg
				}
			}
			_ = c.s.Record(ev)
			c.exitMu.Lock()
			c.exitType, c.exitMsg = req.Type, req.Payload
			c.exitMu.Unlock()
			c.exitOnce.Do(func() { close(c.exited) })
			if req.WantReply {
				_ = req.Reply(true, nil)
			}
		case "keepalive@openssh.com":
			_ = req.Reply(false, nil)
		default:
			ok, err := c.client.SendRequest(req.Type, req.WantReply, req.Payload)
			if req.WantReply {
				_ = req.Reply(ok && err == nil, nil)
			}
		}
	}
}

// eventSink records what a file channel and its observer see; the
// session's core does.
type eventSink interface {
	Record(e event.Event) error
	Data(k event.Kind, ch uint32, p []byte) error
}

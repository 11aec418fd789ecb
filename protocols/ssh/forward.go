package sshproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/metrics"
	"github.com/custos-pam/custos/recorder/event"
)

// directTCPIP is the extra data of a direct-tcpip channel open (RFC 4254
// section 7.2).
type directTCPIP struct {
	Host     string
	Port     uint32
	OrigHost string
	OrigPort uint32
}

// handleDirectTCPIP relays a local port forward when the role allows it,
// recording the destination and byte counts; otherwise it refuses with a
// message the client prints, and audits the attempt.
func (s *session) handleDirectTCPIP(nc ssh.NewChannel) {
	num := s.nextChan.Add(1)
	var m directTCPIP
	if err := ssh.Unmarshal(nc.ExtraData(), &m); err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, "custos: malformed forward request")
		return
	}
	dest := net.JoinHostPort(m.Host, strconv.FormatUint(uint64(m.Port), 10))
	ev := event.Event{Kind: event.KindSSHChannel, Channel: num, Op: "direct-tcpip", Text: dest}
	if !s.Role.AllowPortForward {
		ev.Denied = true
		_ = s.Record(ev)
		s.refused(num, "direct-tcpip", dest, "port forwarding is not allowed")
		_ = nc.Reject(ssh.Prohibited, fmt.Sprintf("custos: port forwarding is not allowed by role %s", s.Role.Name))
		return
	}
	if err := s.Record(ev); err != nil {
		_ = nc.Reject(ssh.Prohibited, "custos: recording unavailable")
		return
	}
	up, upReqs, err := s.up.OpenChannel("direct-tcpip", nc.ExtraData())
	if err != nil {
		_ = s.Record(event.Event{Kind: event.KindSSHChannel, Channel: num, Op: "close", Name: "failed: " + err.Error()})
		_ = nc.Reject(ssh.ConnectionFailed, "custos: the target refused the forward: "+err.Error())
		return
	}
	cl, clReqs, err := nc.Accept()
	if err != nil {
		up.Close()
		return
	}
	go ssh.DiscardRequests(clReqs)
	go ssh.DiscardRequests(upReqs)
	s.Audit("ssh.forward", broker.OutcomeSuccess, "", map[string]any{"destination": dest, "channel": num})
	var in, out int64
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		in = s.pipe(up, cl, metrics.ToTarget)
	}()
	go func() {
		defer wg.Done()
		out = s.pipe(cl, up, metrics.ToClient)
	}()
	wg.Wait()
	cl.Close()
	up.Close()
	_ = s.Record(event.Event{Kind: event.KindSSHChannel, Channel: num, Op: "close", N: out,
		Args: []string{fmt.Sprintf("in=%d", in), fmt.Sprintf("out=%d", out)}})
}

// pipe copies src to dst until EOF, then half-closes dst, and returns the
// bytes moved; dir is the direction (metrics.ToTarget or ToClient).
func (s *session) pipe(dst, src ssh.Channel, dir string) int64 {
	var rb relayBuf
	defer rb.release()
	var n int64
	var err error
	for {
		buf := rb.buf()
		r, rerr := src.Read(buf)
		if r > 0 {
			s.Relayed(dir, r)
			if _, err = dst.Write(buf[:r]); err != nil {
				break
			}
			n += int64(r)
		}
		rb.used(r)
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) {
				err = rerr
			}
			break
		}
	}
	if err == nil {
		_ = dst.CloseWrite()
	} else {
		_ = dst.Close()
	}
	return n
}

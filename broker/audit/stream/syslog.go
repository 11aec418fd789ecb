package stream

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
)

// SDID is the structured-data ID of the element naming a record's place in
// the chain. 32473 is the private enterprise number RFC 5612 reserves for
// documentation; a SIEM matches on the whole ID.
const SDID = "custos@32473"

// facilityAudit is the "log audit" facility (13).
const facilityAudit = 13

// Syslog sends records as RFC 5424 messages over TLS with RFC 5425
// octet-counting framing. Syslog has no acknowledgement, so each batch
// goes on a connection of its own that the broker closes (TLS
// close_notify, then TCP FIN); the batch counts as accepted only when the
// server then closes its side in order, which a syslog server does after
// reading to the end. A connection refused, reset or timed out before that
// fails the batch, which is sent again whole (at least once). A server
// that reads a batch, closes in order and then loses it cannot be told
// apart; the receiver sees the gap in seq.
type Syslog struct {
	address  string
	tls      *tls.Config
	timeout  time.Duration
	hostname string
	appName  string
}

// NewSyslog returns a Syslog sending to address. tlsc's ServerName and
// RootCAs decide what certificate is accepted; timeout bounds one batch.
func NewSyslog(address string, tlsc *tls.Config, hostname, appName string, timeout time.Duration) *Syslog {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if appName == "" {
		appName = "custos"
	}
	return &Syslog{address: address, tls: tlsc, timeout: timeout,
		hostname: headerField(hostname, 255), appName: headerField(appName, 48)}
}

// Send writes recs on a fresh connection and waits for the server to
// close it.
func (s *Syslog) Send(ctx context.Context, recs []broker.AuditRecord) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	d := tls.Dialer{Config: s.tls}
	c, err := d.DialContext(ctx, "tcp", s.address)
	if err != nil {
		return 0, fmt.Errorf("audit syslog: dial %s: %w", s.address, err)
	}
	conn := c.(*tls.Conn)
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	var buf bytes.Buffer
	for _, r := range recs {
		msg, err := s.Message(r)
		if err != nil {
			return 0, err
		}
		buf.WriteString(strconv.Itoa(len(msg)))
		buf.WriteByte(' ')
		buf.Write(msg)
	}
	if _, err := conn.Write(buf.Bytes()); err != nil {
		return 0, fmt.Errorf("audit syslog: write: %w", err)
	}
	if err := conn.CloseWrite(); err != nil {
		return 0, fmt.Errorf("audit syslog: close: %w", err)
	}
	// An orderly close by the server ends the copy with no error; a
	// reset or the timeout is an error.
	if _, err := io.Copy(io.Discard, conn); err != nil {
		return 0, fmt.Errorf("audit syslog: waiting for the server to close: %w", err)
	}
	return len(recs), nil
}

// Message returns r as an RFC 5424 message: PRI by outcome (facility log
// audit), the record's time, APP-NAME, the action as MSGID, an SD element
// with seq, id and the hashes, and the record as JSON (UTF-8, with BOM) as
// MSG.
func (s *Syslog) Message(r broker.AuditRecord) ([]byte, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("audit syslog: seq %d: %w", r.Seq, err)
	}
	sev := 6 // informational
	switch r.Outcome {
	case broker.OutcomeDenied:
		sev = 5 // notice
	case broker.OutcomeError:
		sev = 4 // warning
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "<%d>1 %s %s %s - %s [%s seq=\"%d\" id=\"%s\" prev_hash=\"%s\" hash=\"%s\"] \xef\xbb\xbf",
		facilityAudit*8+sev, r.Time.UTC().Format("2006-01-02T15:04:05.000000Z"), s.hostname, s.appName,
		headerField(r.Action, 32), SDID, r.Seq, sdValue(r.ID), sdValue(r.PrevHash), sdValue(r.Hash))
	b.Write(body)
	return b.Bytes(), nil
}

// headerField makes v a valid RFC 5424 header field: printable US-ASCII
// without spaces, at most n characters, "-" when empty.
func headerField(v string, n int) string {
	v = strings.Map(func(r rune) rune {
		if r > 32 && r < 127 {
			return r
		}
		return '_'
	}, v)
	if len(v) > n {
		v = v[:n]
	}
	if v == "" {
		return "-"
	}
	return v
}

// sdValue escapes '"', '\' and ']' in a PARAM-VALUE.
func sdValue(v string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, `]`, `\]`).Replace(v)
}

// Close does nothing: connections last one batch.
func (s *Syslog) Close() error { return nil }

var _, _ Sink = (*Webhook)(nil), (*Syslog)(nil)

// errShort is returned by ReadFrame for a frame cut short.
var errShort = errors.New("syslog frame cut short")

// ReadFrame reads one RFC 5425 octet-counted frame ("LEN SP MSG") from r;
// it returns io.EOF at a clean end. Frames over max bytes are refused.
func ReadFrame(r io.ByteReader, max int) ([]byte, error) {
	n := 0
	for i := 0; ; i++ {
		c, err := r.ReadByte()
		if err != nil {
			if i == 0 && err == io.EOF {
				return nil, io.EOF
			}
			return nil, errShort
		}
		if c == ' ' && i > 0 {
			break
		}
		if c < '0' || c > '9' || i > 9 {
			return nil, fmt.Errorf("syslog frame: bad length")
		}
		n = n*10 + int(c-'0')
	}
	if n > max {
		return nil, fmt.Errorf("syslog frame: %d bytes over %d", n, max)
	}
	msg := make([]byte, n)
	for i := range msg {
		c, err := r.ReadByte()
		if err != nil {
			return nil, errShort
		}
		msg[i] = c
	}
	return msg, nil
}

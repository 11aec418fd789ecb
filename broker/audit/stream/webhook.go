package stream

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
)

// SignatureHeader carries a webhook request's signature:
// "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">".
const SignatureHeader = "X-Custos-Signature"

// SeqHeader carries the record's seq, for receivers that deduplicate
// without parsing the body.
const SeqHeader = "X-Custos-Audit-Seq"

// Webhook POSTs each record as JSON (broker.AuditRecord's encoding, with
// seq, prev_hash and hash) to a URL, one request per record; a 2xx answer
// accepts it.
type Webhook struct {
	url    string
	secret []byte
	client *http.Client
	now    func() time.Time
}

// NewWebhook returns a Webhook posting to url, signing with secret. tlsc
// may be nil for the system roots; timeout bounds one request.
func NewWebhook(url string, secret []byte, tlsc *tls.Config, timeout time.Duration) *Webhook {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsc
	tr.Proxy = nil
	return &Webhook{url: url, secret: secret, now: time.Now, client: &http.Client{
		Transport: tr, Timeout: timeout,
		// A redirect is a misconfiguration, not an acceptance.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Sign returns the SignatureHeader value for body at t.
func Sign(secret, body []byte, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts + "."))
	m.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}

// Send posts recs one at a time, stopping at the first not accepted.
func (w *Webhook) Send(ctx context.Context, recs []broker.AuditRecord) (int, error) {
	for i, r := range recs {
		if err := w.post(ctx, r); err != nil {
			return i, err
		}
	}
	return len(recs), nil
}

func (w *Webhook) post(ctx context.Context, r broker.AuditRecord) error {
	body, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("audit webhook: seq %d: %w", r.Seq, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("audit webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "custos-audit-stream")
	req.Header.Set(SeqHeader, strconv.FormatInt(r.Seq, 10))
	req.Header.Set(SignatureHeader, Sign(w.secret, body, w.now()))
	resp, err := w.client.Do(req)
	if err != nil {
		// The URL has no credentials or query (config checks it), so the
		// error may name it.
		return fmt.Errorf("audit webhook: seq %d: %w", r.Seq, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("audit webhook: seq %d: answered %s", r.Seq, resp.Status)
	}
	return nil
}

// Close closes idle connections.
func (w *Webhook) Close() error {
	w.client.CloseIdleConnections()
	return nil
}

// VerifySignature checks a SignatureHeader value against body as a
// receiver should: the HMAC over "<t>.<body>" with the shared secret,
// compared in constant time, and t within tolerance of now (replay
// window).
func VerifySignature(secret, body []byte, header string, now time.Time, tolerance time.Duration) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return errors.New("audit webhook signature: malformed")
	}
	if d := now.Sub(time.Unix(t, 0)); d > tolerance || d < -tolerance {
		return errors.New("audit webhook signature: timestamp outside the tolerance")
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return errors.New("audit webhook signature: malformed")
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts + "."))
	m.Write(body)
	if !hmac.Equal(m.Sum(nil), got) {
		return errors.New("audit webhook signature: mismatch")
	}
	return nil
}

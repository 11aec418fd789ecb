package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/share"
	"github.com/custos-pam/custos/recorder"
)

// Share link limits, per client address and shared by every broker on
// the store: ShareRequestsPerMinute requests of any kind, and
// ShareMissesPerHour unknown, expired or revoked tokens, after which the
// address is refused until the hour is out.
const (
	ShareRequestsPerMinute = 30
	ShareMissesPerHour     = 10
)

// txAppender appends inside a store transaction; *audit.Log implements it.
type txAppender interface {
	AppendTx(ctx context.Context, tx broker.Tx, e audit.Entry) (broker.AuditRecord, error)
}

// shareAppender is the audit log share links write through: the API's
// own when it can append inside a transaction, else a log on the store.
func shareAppender(o Options) txAppender {
	if t, ok := o.Audit.(txAppender); ok {
		return t
	}
	return audit.NewLog(o.Store)
}

// serveShare answers GET /share/{token} anonymously: the evidence bundle
// of an evidence link; for a session link the session's evidence bundle,
// or with ?format=asciicast|jsonl its recording. No other route accepts
// the token, and this route accepts nothing else: a bearer token or a
// cookie is neither needed nor looked at.
func (a *API) serveShare(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	addr := ClientIP(r)
	if ok, err := a.shareLimit(ctx, addr, false); err != nil || !ok {
		a.shareRefused(w, err)
		return
	}
	token := r.PathValue("token")
	l, err := a.shares().Resolve(ctx, token, addr)
	if err != nil {
		if errors.Is(err, share.ErrUnknown) || errors.Is(err, share.ErrExpired) || errors.Is(err, share.ErrRevoked) {
			_, lerr := a.shareLimit(ctx, addr, true)
			if lerr != nil {
				a.log.Error("api: share limit", "err", lerr)
			}
			// The same answer for all three: a guesser learns nothing.
			WriteError(w, http.StatusNotFound, "no_share", "this link does not exist, has expired or was revoked")
			return
		}
		a.Fail(w, err)
		return
	}
	w.Header().Set("X-Robots-Tag", "noindex")
	switch l.Kind {
	case share.KindEvidence:
		a.writePeriod(w, r, l.Target, l.From, l.To, "share:"+l.ID)
	case share.KindSession:
		a.shareSession(w, r, l)
	default:
		WriteError(w, http.StatusNotFound, "no_share", "this link does not exist, has expired or was revoked")
	}
}

// shareSession serves one session's evidence bundle or recording; the
// link names the session, and no parameter can name another.
func (a *API) shareSession(w http.ResponseWriter, r *http.Request, l share.Link) {
	ctx := r.Context()
	var s broker.Session
	err := a.o.Store.View(ctx, func(tx broker.Tx) error {
		var err error
		s, err = tx.GetSession(l.SessionID)
		return err
	})
	if err != nil {
		a.Fail(w, err)
		return
	}
	if a.o.Recordings == nil {
		unavailable(w, "no_recorder", "recordings are not available on this broker")
		return
	}
	format := r.URL.Query().Get("format")
	switch format {
	case "":
		body, _, err := a.sessionBundle(ctx, s)
		if err != nil {
			a.log.Error("api: share: session bundle", "share", l.ID, "err", err)
			WriteError(w, http.StatusBadGateway, "evidence_failed", "the evidence bundle could not be built")
			return
		}
		w.Header().Set("Content-Type", "application/zip")
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="custos-evidence-%s.zip"`, fileSafe(s.ID)))
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(body)
	case "asciicast", "jsonl":
		rec, err := a.o.Recordings.Open(ctx, s.ID, recorder.Access{Actor: "share:" + l.ID, Purpose: "share link " + format})
		if err != nil {
			WriteError(w, http.StatusBadGateway, "recording_unavailable", "the recording could not be read")
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		if format == "jsonl" {
			w.Header().Set("Content-Type", "application/x-ndjson")
			_ = rec.ExportJSONL(ctx, w)
			return
		}
		var buf bytesBuffer
		if err := rec.ExportAsciicast(ctx, &buf, recorder.AsciicastOptions{}); err != nil {
			WriteError(w, http.StatusUnprocessableEntity, "no_terminal", "the recording has no terminal output")
			return
		}
		w.Header().Set("Content-Type", "application/x-asciicast")
		_, _ = w.Write(buf.b)
	default:
		WriteError(w, http.StatusBadRequest, "bad_format", "format must be asciicast or jsonl, or absent for the evidence bundle")
	}
}

func (a *API) shareRefused(w http.ResponseWriter, err error) {
	if err != nil {
		a.log.Error("api: share limit", "err", err)
		unavailable(w, "unavailable", "try again later")
		return
	}
	w.Header().Set("Retry-After", "60")
	WriteError(w, http.StatusTooManyRequests, "rate_limited", "too many requests for share links from this address; try again later")
}

// shareWindow is a fixed-window tally.
type shareWindow struct {
	Start time.Time `json:"start"`
	N     int       `json:"n"`
}

// shareLimit counts a request (miss false) or a miss from addr and
// reports whether the address is still within both limits.
func (a *API) shareLimit(ctx context.Context, addr string, miss bool) (bool, error) {
	now := a.o.Now().UTC()
	ok := true
	err := a.o.Store.Update(ctx, func(tx broker.Tx) error {
		count := func(key string, window time.Duration, max int, add bool) error {
			var w shareWindow
			if b, err := tx.GetLimit(key); err == nil {
				_ = json.Unmarshal(b, &w)
			} else if !errors.Is(err, broker.ErrNotFound) {
				return err
			}
			if now.Sub(w.Start) >= window {
				w = shareWindow{Start: now}
			}
			if add {
				w.N++
			}
			if w.N > max || (!add && w.N >= max) {
				ok = false
			}
			b, _ := json.Marshal(w)
			return tx.PutLimit(key, b, w.Start.Add(window))
		}
		if err := count("share.miss:"+addr, time.Hour, ShareMissesPerHour, miss); err != nil {
			return err
		}
		if miss {
			return nil
		}
		return count("share.req:"+addr, time.Minute, ShareRequestsPerMinute, true)
	})
	if err != nil {
		return false, fmt.Errorf("share limit: %w", err)
	}
	return ok, nil
}

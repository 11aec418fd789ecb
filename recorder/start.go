package recorder

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/recorder/chunk"
	"github.com/custos-pam/custos/recorder/event"
)

// Start begins recording a session and returns its writer. It fills in
// h.Version and, when zero, h.StartedAt. Start does the network work a
// session needs up front (a data key from the key wrapper, the session
// index entry) and makes the session durable in the spool before it
// returns, so the proxy can relay the first byte only once recording is
// guaranteed. A fail-closed session is refused while the store is down.
func (r *Recorder) Start(ctx context.Context, h event.Header) (*Writer, error) {
	now := time.Now()
	if h.StartedAt.IsZero() {
		h.StartedAt = now
	}
	h.StartedAt = h.StartedAt.UTC()
	h.Version = event.FormatVersion
	if err := h.Validate(); err != nil {
		return nil, fmt.Errorf("recorder: start: %w", err)
	}
	id := h.SessionID
	ready := r.Ready()
	if errors.Is(ready, ErrClosed) || (ready != nil && !h.Policy.FailOpen) {
		return nil, fmt.Errorf("recorder: start %s: %w", id, ready)
	}
	r.mu.Lock()
	_, dup := r.tracks[id]
	r.mu.Unlock()
	if dup {
		return nil, fmt.Errorf("recorder: start %s: session is already recorded", id)
	}

	key, wrapped, err := r.cfg.Keys.NewDataKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("recorder: start %s: data key: %w", id, err)
	}
	aead, err := chunk.NewAEAD(key)
	clear(key)
	if err != nil {
		return nil, fmt.Errorf("recorder: start %s: %w", id, err)
	}
	hdr, err := h.Encode()
	if err != nil {
		return nil, fmt.Errorf("recorder: start %s: %w", id, err)
	}
	hh := event.HashHeader(hdr)
	retention := r.cfg.Retention
	if h.Policy.Retention > 0 {
		retention = h.Policy.Retention
	}
	meta := sessionMeta{
		SessionID: id, Header: hdr, HeaderHash: hex.EncodeToString(hh[:]), StartedAt: h.StartedAt,
		Key: wrapped, Prefix: r.sessionPrefix(id, h.StartedAt),
		RetainUntil: h.StartedAt.Add(retention).Truncate(time.Second),
		LegalHold:   r.cfg.LegalHold || h.Policy.LegalHold, FailOpen: h.Policy.FailOpen,
		IndexSQL: h.Policy.IndexSQL,
	}
	mb, err := json.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("recorder: start %s: %w", id, err)
	}
	sp, err := r.spool.Create(id)
	if err != nil {
		return nil, fmt.Errorf("recorder: start %s: %w", id, err)
	}
	if err := sp.WriteFile(metaFile, mb); err != nil {
		sp.Remove()
		return nil, fmt.Errorf("recorder: start %s: %w", id, err)
	}

	t := &track{id: id, sp: sp, meta: meta}
	lag := min(max(now.Sub(h.StartedAt), 0), time.Minute)
	w := &Writer{
		r: r, t: t, header: h, start: now.Add(-lag), aead: aead, failOpen: h.Policy.FailOpen,
		chunkSize: r.cfg.ChunkSize, interval: r.cfg.ChunkInterval, inFlight: inFlightChunks(r.cfg.ChunkSize),
		kick: make(chan struct{}, 1), toSpool: make(chan sealed, maxInFlight),
		sealerDone: make(chan struct{}), done: make(chan struct{}),
		progress: make(chan struct{}), ix: newIndexer(h.Policy.IndexSQL), prev: hh,
	}
	start := event.Event{Kind: event.KindStart}
	w.ix.observe(&start)
	w.cur = r.chunks.room(nil, eventRoom(&start))
	w.appended(event.Append(w.cur, &start), 0)

	if r.cfg.Index != nil {
		if err := r.cfg.Index.PutSession(ctx, w.indexEntry(broker.SessionLive, w.ix.stats(), time.Time{}, "", "")); err != nil {
			sp.Remove()
			return nil, fmt.Errorf("recorder: start %s: session index: %w", id, err)
		}
	}
	startBytes := int64(len(w.cur))
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		sp.Remove()
		return nil, fmt.Errorf("recorder: start %s: %w", id, ErrClosed)
	}
	r.live[id] = w
	r.tracks[id] = t
	r.mu.Unlock()
	r.forceSpool(startBytes)
	go w.sealLoop()
	go w.spoolLoop()
	if ready != nil {
		// A fail-open session started while the store is down.
		w.fail(fmt.Errorf("%w: %w", ErrRecordingFailed, ready))
	}
	return w, nil
}

// indexEntry builds the session's index entry.
func (w *Writer) indexEntry(state broker.SessionState, st indexStats, ended time.Time, hash, reason string) broker.Session {
	return sessionEntry(w.header, state, st, ended, hash, reason)
}

func sessionEntry(h event.Header, state broker.SessionState, st indexStats, ended time.Time, hash, reason string) broker.Session {
	return broker.Session{
		ID: h.SessionID, GrantID: h.GrantID, User: h.User, Target: h.Target, Role: h.Role,
		Protocol: h.Protocol, ClientAddr: h.ClientAddr, StartedAt: h.StartedAt, EndedAt: ended,
		State: state, Bytes: st.Bytes, Statements: st.Statements, Index: st.Index,
		ManifestHash: hash, EndReason: reason,
	}
}

// sessionEnded hands a closed writer's session to the finalizer.
func (r *Recorder) sessionEnded(w *Writer, info endInfo, st indexStats) {
	t := w.t
	if b, err := json.Marshal(info); err == nil {
		if err := t.sp.WriteFile(endFile, b); err != nil {
			// Recovery will close the session as interrupted.
			r.log.Error("recorder: spool end of session", "session", t.id, "err", err)
		}
	}
	r.mu.Lock()
	delete(r.live, t.id)
	t.end = &info
	t.stats = st
	r.maybeFinalize(t)
	r.mu.Unlock()
	if r.cfg.Index != nil {
		// The session is over even if its upload is still pending; the
		// finalizer adds the manifest hash.
		go func() {
			entry := func() broker.Session {
				return w.indexEntry(broker.SessionState(info.State), st, info.EndedAt, "", endReason(info))
			}
			if err := t.putIndex(r, entry, false); err != nil {
				r.log.Warn("recorder: update session index", "session", t.id, "err", err)
			}
		}()
	}
}

// endReason is the index's end reason: who and why.
func endReason(e endInfo) string {
	if e.By != "" {
		return e.By + ": " + e.Reason
	}
	return e.Reason
}

// recordingFailed logs and audits a recording failure.
func (r *Recorder) recordingFailed(w *Writer, cause error) {
	h := w.header
	action, outcome := "session.recording.failed", broker.OutcomeError
	if w.failOpen {
		// The same action the proxies use for a recording that could not
		// start on a fail-open target.
		action = "session.record_fail_open"
	}
	r.log.Error("recorder: recording failed", "session", h.SessionID, "target", h.Target,
		"fail_open", w.failOpen, "err", cause)
	ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	defer cancel()
	err := r.audit(ctx, audit.Entry{
		Actor: "broker", Action: action, Target: h.Target, Outcome: outcome, Reason: cause.Error(),
		Details: map[string]any{"protocol": h.Protocol, "session_id": h.SessionID, "grant_id": h.GrantID, "user": h.User, "fail_open": w.failOpen},
	})
	if err != nil {
		r.log.Error("recorder: audit recording failure", "session", h.SessionID, "err", err)
	}
	if w.failOpen {
		w.Note("fail_open", "recording degraded, session continues by policy: "+cause.Error())
	}
}

// indexLoop refreshes live sessions' index entries.
func (r *Recorder) indexLoop() {
	defer r.wg.Done()
	if r.cfg.Index == nil {
		return
	}
	tick := time.NewTicker(r.cfg.IndexInterval)
	defer tick.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-tick.C:
		}
		r.mu.Lock()
		ws := make([]*Writer, 0, len(r.live))
		for _, w := range r.live {
			ws = append(ws, w)
		}
		r.mu.Unlock()
		for _, w := range ws {
			w.mu.Lock()
			changed := w.ix.changed && !w.closing
			w.ix.changed = false
			st := w.ix.stats()
			w.mu.Unlock()
			if !changed {
				continue
			}
			err := w.t.putIndex(r, func() broker.Session {
				return w.indexEntry(broker.SessionLive, st, time.Time{}, "", "")
			}, false)
			if err != nil {
				r.log.Warn("recorder: update session index", "session", w.header.SessionID, "err", err)
			}
		}
	}
}

// putIndex writes the session's index entry unless the final entry was
// already written; final marks this write as the last.
func (t *track) putIndex(r *Recorder, entry func() broker.Session, final bool) error {
	t.ixMu.Lock()
	defer t.ixMu.Unlock()
	if t.final {
		return nil
	}
	ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	defer cancel()
	if err := r.cfg.Index.PutSession(ctx, entry()); err != nil {
		return err
	}
	t.final = final
	return nil
}

package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/recorder"
	"github.com/custos-pam/custos/recorder/evidence"
)

// SessionRow is a session as lists show it.
type SessionRow struct {
	broker.Session
	DurationMS int64       `json:"duration_ms"`
	Verify     verifyState `json:"verify"`
	Watchable  bool        `json:"watchable"`
}

// Row returns the row of session s, with its verification status (a
// background check is queued when none is known) and whether it can be
// watched on this broker.
func (a *API) Row(s broker.Session) SessionRow {
	end := s.EndedAt
	if end.IsZero() {
		end = a.o.Now()
	}
	row := SessionRow{Session: s, DurationMS: max(end.Sub(s.StartedAt), 0).Milliseconds()}
	switch {
	case s.State == broker.SessionLive:
		row.Verify = verifyState{Status: "live"}
		row.Watchable = a.o.Live != nil && a.o.Live.Has(s.ID) || a.remote(s)
	case a.o.Recordings == nil:
		row.Verify = verifyState{Status: "unavailable"}
	default:
		row.Verify = a.verify.status(s, a.o.Recordings)
	}
	return row
}

// remote reports whether s is live on another replica this broker can
// forward to.
func (a *API) remote(s broker.Session) bool {
	f := a.o.Forwarder
	return f != nil && s.State == broker.SessionLive && s.Replica != "" && !sameURL(s.Replica, f.Self)
}

// Forward serves r through the replica that runs s, when another one
// does, and reports whether it did; see Forwarder.
func (a *API) Forward(w http.ResponseWriter, r *http.Request, s broker.Session) bool {
	return a.o.Forwarder.Forward(w, r, s)
}

// CanTerminate reports whether p may end running sessions on this broker.
func (a *API) CanTerminate(p Principal) bool {
	return a.o.Terminator != nil && a.o.Access.May(p.User, access.TerminateSession)
}

// sessionFilter parses the list's filters: user, target, protocol,
// state, since, until, q (or contains: commands, SQL, file paths), limit.
func sessionFilter(r *http.Request) (broker.SessionFilter, error) {
	q := r.URL.Query()
	contains := q.Get("q")
	if contains == "" {
		contains = q.Get("contains")
	}
	f := broker.SessionFilter{User: q.Get("user"), Target: q.Get("target"), Protocol: q.Get("protocol"),
		Contains: strings.TrimSpace(contains), Limit: 500}
	if s := q.Get("state"); s != "" {
		f.States = []broker.SessionState{broker.SessionState(s)}
	}
	for name, dst := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if v := q.Get(name); v != "" {
			t, err := ParseTime(v)
			if err != nil {
				return f, errors.New(name + " must be a time such as 2026-11-23T14:00 or an RFC 3339 time")
			}
			*dst = t
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 5000 {
			return f, errors.New("limit must be between 1 and 5000")
		}
		f.Limit = n
	}
	return f, nil
}

// ParseTime accepts RFC 3339 and the browser's datetime-local form (UTC).
func ParseTime(v string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errors.New("bad time")
}

// listSessions lists the sessions the caller may see: their own and those
// of grants they approved; every one for security and auditors.
// ?state=live lists the running ones.
func (a *API) listSessions(w http.ResponseWriter, r *http.Request) {
	f, err := sessionFilter(r)
	if err != nil {
		WriteError(w, http.StatusBadRequest, "bad_filter", err.Error())
		return
	}
	out, err := a.o.Access.VisibleSessions(r.Context(), principal(r).User, f)
	if err != nil {
		a.Fail(w, err)
		return
	}
	rows := make([]SessionRow, len(out))
	for i, s := range out {
		rows[i] = a.Row(s)
	}
	WriteJSON(w, http.StatusOK, rows)
}

// Session loads session id for a read by the caller under the access
// rules; a refusal is audited by the access service.
func (a *API) Session(r *http.Request, id string, action access.Action, purpose string) (broker.Session, error) {
	p := principal(r)
	return a.o.Access.SessionAs(r.Context(), p.User, id, access.SessionRead{Action: action, Purpose: purpose, Via: p.Via})
}

// sessionDetail is one session with the request and grant behind it.
type sessionDetail struct {
	SessionRow
	Grant   *broker.Grant   `json:"grant,omitempty"`
	Request *broker.Request `json:"request,omitempty"`
	// CanTerminate is set for security staff on a live session.
	CanTerminate bool `json:"can_terminate"`
	// Commands are the session index's entries (commands, statements,
	// paths), as the evidence bundle lists them.
	Commands []string `json:"commands"`
	// EvidenceStepUp is identity.step_up.export_evidence: the evidence
	// download needs a step-up in the X-Custos-Step-Up header.
	EvidenceStepUp string `json:"evidence_step_up,omitempty"`
}

func (a *API) getSession(w http.ResponseWriter, r *http.Request) {
	s, err := a.Session(r, r.PathValue("id"), access.ViewSession, "metadata")
	if err != nil {
		a.Fail(w, err)
		return
	}
	d := sessionDetail{SessionRow: a.Row(s), Commands: evidence.Commands(s.Index)}
	if g, err := a.o.Access.GetGrant(r.Context(), s.GrantID); err == nil {
		d.Grant = &g
		if q, err := a.o.Access.GetRequest(r.Context(), g.RequestID); err == nil {
			d.Request = &q
		}
	}
	d.CanTerminate = s.State == broker.SessionLive && a.CanTerminate(principal(r))
	d.EvidenceStepUp = a.current().Identity.StepUp.ExportEvidence
	WriteJSON(w, http.StatusOK, d)
}

// verifySession runs a full verification and returns the report.
func (a *API) verifySession(w http.ResponseWriter, r *http.Request) {
	s, err := a.Session(r, r.PathValue("id"), access.ViewSession, "verify")
	if err != nil {
		a.Fail(w, err)
		return
	}
	if a.o.Recordings == nil {
		unavailable(w, "no_recorder", "recordings are not available on this broker")
		return
	}
	rep, err := a.o.Recordings.Verify(r.Context(), s.ID)
	if err != nil {
		WriteError(w, http.StatusBadGateway, "verify_failed", "the recording store could not be read: "+err.Error())
		return
	}
	a.verify.put(s, rep)
	outcome := broker.OutcomeSuccess
	if !rep.Intact {
		outcome = broker.OutcomeError
	}
	p := principal(r)
	a.record(r.Context(), audit.Entry{Actor: p.User, Action: "session.verify", Target: s.Target, Outcome: outcome,
		Reason: rep.Verdict, Details: map[string]any{"session_id": s.ID, "via": p.Via}})
	WriteJSON(w, http.StatusOK, rep)
}

// export streams ?format=jsonl (the raw events) or asciicast (one terminal
// channel: ?channel=N, ?input=true to include keystrokes).
func (a *API) export(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	format := q.Get("format")
	if format != "jsonl" && format != "asciicast" {
		WriteError(w, http.StatusBadRequest, "bad_format", "format must be asciicast or jsonl")
		return
	}
	s, err := a.Session(r, r.PathValue("id"), access.ExportSession, "export "+format)
	if err != nil {
		a.Fail(w, err)
		return
	}
	if a.o.Recordings == nil {
		unavailable(w, "no_recorder", "recordings are not available on this broker")
		return
	}
	rec, err := a.o.Recordings.Open(r.Context(), s.ID, recorder.Access{Actor: principal(r).User, Purpose: "export " + format})
	if err != nil {
		WriteError(w, http.StatusBadGateway, "recording_unavailable", err.Error())
		return
	}
	if format == "jsonl" {
		w.Header().Set("Content-Type", "application/x-ndjson")
		_ = rec.ExportJSONL(r.Context(), w)
		return
	}
	ch, _ := strconv.ParseUint(q.Get("channel"), 10, 32)
	opts := recorder.AsciicastOptions{Channel: uint32(ch), Input: q.Get("input") == "true"}
	// Render into memory first so a recording without terminal output
	// answers with an error instead of a truncated 200.
	var buf bytesBuffer
	if err := rec.ExportAsciicast(r.Context(), &buf, opts); err != nil {
		WriteError(w, http.StatusUnprocessableEntity, "no_terminal", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/x-asciicast")
	_, _ = w.Write(buf.b)
}

// evidence builds and sends the session's evidence bundle (see
// recorder/evidence). The download is audited first: an export that
// cannot be audited is refused.
func (a *API) evidence(w http.ResponseWriter, r *http.Request) {
	s, err := a.Session(r, r.PathValue("id"), access.ExportSession, "evidence bundle")
	if err != nil {
		a.Fail(w, err)
		return
	}
	if a.o.Recordings == nil {
		unavailable(w, "no_recorder", "recordings are not available on this broker")
		return
	}
	if s.State == broker.SessionLive {
		WriteError(w, http.StatusConflict, "live", "the session is still being recorded")
		return
	}
	if required := a.current().Identity.StepUp.ExportEvidence; required != "" {
		// A GET has no body: the step-up comes as JSON in a header.
		var su *stepUpBody
		if h := r.Header.Get(StepUpHeader); h != "" {
			su = &stepUpBody{}
			if len(h) > 64<<10 || json.Unmarshal([]byte(h), su) != nil {
				WriteError(w, http.StatusBadRequest, "bad_request", StepUpHeader+" must be a JSON step_up object")
				return
			}
		}
		if !a.requireStepUp(w, r, required, identity.ActionExportEvidence, s.ID, "exporting evidence", su) {
			return
		}
	}
	ctx := r.Context()
	p := principal(r)
	rec, err := a.o.Audit.Append(ctx, audit.Entry{Actor: p.User, Action: "session.evidence.export", Target: s.Target,
		Outcome: broker.OutcomeSuccess, Reason: "evidence bundle",
		Details: map[string]any{"session_id": s.ID, "user": s.User, "manifest_sha256": s.ManifestHash, "via": p.Via}})
	if err != nil {
		a.Fail(w, fmt.Errorf("evidence: audit: %w", err))
		return
	}
	body, rep, err := a.sessionBundle(ctx, s)
	if err != nil {
		a.log.Error("api: evidence bundle", "session", s.ID, "audit_seq", rec.Seq, "err", err)
		WriteError(w, http.StatusBadGateway, "evidence_failed", "the evidence bundle could not be built: "+err.Error())
		return
	}
	a.verify.put(s, rep)
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="custos-evidence-%s.zip"`, s.ID))
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(body)
}

// sessionBundle builds a session's evidence bundle (recorder/evidence),
// with the grant and request behind it.
func (a *API) sessionBundle(ctx context.Context, s broker.Session) ([]byte, *recorder.VerifyReport, error) {
	in := evidence.Input{Session: s, Recordings: a.o.Recordings, Store: a.o.Store, Now: a.o.Now()}
	if g, err := a.o.Access.GetGrant(ctx, s.GrantID); err == nil {
		in.Grant = &g
		if q, err := a.o.Access.GetRequest(ctx, g.RequestID); err == nil {
			in.Request = &q
		}
	}
	return evidence.Build(ctx, in)
}

// kill ends a live session: security staff only, reason required.
func (a *API) kill(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	id := r.PathValue("id")
	var in struct {
		Reason string `json:"reason"`
		// StepUp is a fresh re-authentication bound to this session,
		// when identity.step_up.terminate_session asks for one.
		StepUp *stepUpBody `json:"step_up"`
	}
	if err := DecodeJSON(r, &in); err != nil || strings.TrimSpace(in.Reason) == "" {
		WriteError(w, http.StatusBadRequest, "reason_required", "terminating a session needs a reason")
		return
	}
	reason := strings.TrimSpace(in.Reason)
	if !a.o.Access.May(p.User, access.TerminateSession) {
		a.record(r.Context(), audit.Entry{Actor: p.User, Action: "session.terminate", Outcome: broker.OutcomeDenied,
			Reason: "not a security admin", Details: map[string]any{"session_id": id, "via": p.Via}})
		WriteError(w, http.StatusForbidden, "forbidden", "only security staff may terminate sessions")
		return
	}
	if !a.requireStepUp(w, r, a.current().Identity.StepUp.TerminateSession, identity.ActionTerminateSession, id,
		"terminating a session", in.StepUp) {
		return
	}
	if a.o.Terminator == nil {
		unavailable(w, "no_proxies", "no proxy runs on this broker")
		return
	}
	var s broker.Session
	err := a.o.Store.View(r.Context(), func(tx broker.Tx) error {
		var err error
		s, err = tx.GetSession(id)
		return err
	})
	if err != nil && !errors.Is(err, broker.ErrNotFound) {
		a.Fail(w, err)
		return
	}
	if !a.o.Terminator.Terminate(id, "terminated by "+p.User+": "+reason) {
		// Another replica may run it: it terminates and audits.
		body, _ := json.Marshal(map[string]string{"reason": reason})
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		if err == nil && a.Forward(w, r, s) {
			return
		}
		WriteError(w, http.StatusNotFound, "not_live", "no live session "+id+" on this broker")
		return
	}
	a.record(r.Context(), audit.Entry{Actor: p.User, Action: "session.terminate", Target: s.Target,
		Outcome: broker.OutcomeSuccess, Reason: reason, Details: map[string]any{"session_id": id, "user": s.User, "via": p.Via}})
	WriteJSON(w, http.StatusOK, map[string]string{"terminated": id})
}

// bytesBuffer is a minimal in-memory writer.
type bytesBuffer struct{ b []byte }

func (b *bytesBuffer) Write(p []byte) (int, error) { b.b = append(b.b, p...); return len(p), nil }

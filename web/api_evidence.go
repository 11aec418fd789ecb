package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/retrieval"
	"github.com/custos-pam/custos/broker/share"
	"github.com/custos-pam/custos/recorder/evidence"
)

// evidenceOnly wraps h so only those the rules let export evidence
// (security staff and auditors) reach it; a refusal is audited.
func (a *API) evidenceOnly(action access.Action, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := principal(r)
		if !a.o.Access.May(p.User, action) {
			a.record(r.Context(), audit.Entry{Actor: p.User, Action: string(action), Outcome: broker.OutcomeDenied,
				Reason: "not a security admin", Details: map[string]any{"via": p.Via}})
			WriteError(w, http.StatusForbidden, "forbidden", "evidence and share links are for security staff and auditors")
			return
		}
		h(w, r)
	}
}

// period reads ?target=&from=&to= (times as ParseTime takes them; a date
// alone is midnight UTC).
func period(q url.Values) (target string, from, to time.Time, err error) {
	target = strings.TrimSpace(q.Get("target"))
	if target == "" {
		return "", from, to, errors.New("target is required")
	}
	if from, err = ParseTime(q.Get("from")); err != nil {
		return "", from, to, errors.New("from must be a time such as 2026-10-01 or 2026-10-01T00:00:00Z")
	}
	if to, err = ParseTime(q.Get("to")); err != nil {
		return "", from, to, errors.New("to must be a time such as 2026-11-01 or 2026-11-01T00:00:00Z")
	}
	if !from.Before(to) {
		return "", from, to, errors.New("from must be before to")
	}
	return target, from, to, nil
}

// evidencePeriod streams the evidence bundle of a target for a period
// (recorder/evidence). The export is audited before anything is sent.
func (a *API) evidencePeriod(w http.ResponseWriter, r *http.Request) {
	target, from, to, err := period(r.URL.Query())
	if err != nil {
		WriteError(w, http.StatusBadRequest, "bad_period", err.Error())
		return
	}
	p := principal(r)
	_, err = a.o.Audit.Append(r.Context(), audit.Entry{Actor: p.User, Action: "evidence.export", Target: target,
		Outcome: broker.OutcomeSuccess, Reason: "evidence bundle",
		Details: map[string]any{"from": from, "to": to, "via": p.Via}})
	if err != nil {
		a.Fail(w, fmt.Errorf("evidence: audit: %w", err))
		return
	}
	a.writePeriod(w, r, target, from, to, p.User)
}

// writePeriod collects the bundle, then streams it: an error while
// collecting still gets a proper error response.
func (a *API) writePeriod(w http.ResponseWriter, r *http.Request, target string, from, to time.Time, by string) {
	in := evidence.PeriodInput{Target: target, From: from, To: to, Store: a.o.Store, By: by, Now: a.o.Now()}
	if a.o.Recordings != nil {
		in.Recordings = a.o.Recordings
	}
	if a.o.AuditVerifier != nil {
		in.Chain = a.o.AuditVerifier
	}
	began := time.Now()
	b, err := evidence.Collect(r.Context(), in)
	if err != nil {
		a.log.Error("api: evidence bundle", "target", target, "err", err)
		WriteError(w, http.StatusBadGateway, "evidence_failed", "the evidence bundle could not be built")
		return
	}
	// The live sample's verdicts are on the record like any other
	// verification, so the next bundle carries them as recorded ones.
	for _, s := range b.Sessions {
		if v := s.Verify; v.Source == "live" && v.Intact != nil {
			outcome := broker.OutcomeSuccess
			if !*v.Intact {
				outcome = broker.OutcomeError
			}
			a.record(r.Context(), audit.Entry{Actor: by, Action: "session.verify", Target: s.Target, Outcome: outcome,
				Reason: v.Verdict, Details: map[string]any{"session_id": s.ID, "via": "evidence"}})
		}
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="custos-evidence-%s-%s-%s.zip"`,
		fileSafe(target), from.Format("20060102"), to.Format("20060102")))
	w.Header().Set("Cache-Control", "no-store")
	if err := b.WriteZip(w); err != nil {
		a.log.Error("api: evidence bundle: write", "target", target, "err", err)
		return
	}
	a.log.Info("api: evidence bundle", "target", target, "sessions", len(b.Sessions), "verified_live", b.Summary.VerifiedLive,
		"took", time.Since(began).Round(time.Millisecond))
}

// fileSafe keeps a name to letters, digits, dot, dash and underscore.
func fileSafe(s string) string {
	return strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' {
			return c
		}
		return '_'
	}, s)
}

// shares is the API's share link service.
func (a *API) shares() *share.Service {
	return &share.Service{Store: a.o.Store, Audit: a.shareAudit, Now: a.o.Now}
}

// shareCreated is the answer to creating a link: the only time its URL
// (with the token) is shown.
type shareCreated struct {
	share.Link
	URL   string `json:"url"`
	Token string `json:"token"`
}

func (a *API) createShare(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Kind      string `json:"kind"`
		Target    string `json:"target"`
		From      string `json:"from"`
		To        string `json:"to"`
		SessionID string `json:"session_id"`
		TTL       string `json:"ttl"`
		Note      string `json:"note"`
	}
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, http.StatusBadRequest, "bad_json", err.Error())
		return
	}
	nl := share.NewLink{Kind: in.Kind, Target: in.Target, SessionID: in.SessionID, Note: in.Note}
	if in.TTL != "" {
		d, err := time.ParseDuration(in.TTL)
		if err != nil || d < time.Minute {
			WriteError(w, http.StatusBadRequest, "bad_ttl", "ttl must be a duration such as 72h, at least 1m")
			return
		}
		nl.TTL = d
	}
	switch in.Kind {
	case share.KindEvidence:
		target, from, to, err := period(url.Values{"target": {in.Target}, "from": {in.From}, "to": {in.To}})
		if err != nil {
			WriteError(w, http.StatusBadRequest, "bad_period", err.Error())
			return
		}
		nl.Target, nl.From, nl.To = target, from, to
	case share.KindSession:
		// The session must exist and be closed: its recording is sealed.
		s, err := a.Session(r, in.SessionID, access.ExportSession, "share link")
		if err != nil {
			a.Fail(w, err)
			return
		}
		if s.State == broker.SessionLive {
			WriteError(w, http.StatusConflict, "live", "the session is still being recorded")
			return
		}
		nl.Target = s.Target
	}
	l, token, err := a.shares().Create(r.Context(), principal(r).User, nl)
	if err != nil {
		a.Fail(w, err)
		return
	}
	base := strings.TrimRight(a.o.PublicURL, "/")
	if base == "" {
		base = "https://" + r.Host
	}
	WriteJSON(w, http.StatusCreated, shareCreated{Link: l.View(), URL: base + SharePath(token), Token: token})
}

// SharePath is the anonymous path of a share link's token.
func SharePath(token string) string { return "/share/" + token }

func (a *API) listShares(w http.ResponseWriter, r *http.Request) {
	links, err := a.shares().List(r.Context())
	if err != nil {
		a.Fail(w, err)
		return
	}
	now := a.o.Now()
	type row struct {
		share.Link
		State string `json:"state"`
	}
	out := make([]row, len(links))
	for i, l := range links {
		out[i] = row{l, l.State(now)}
	}
	WriteJSON(w, http.StatusOK, out)
}

func (a *API) revokeShare(w http.ResponseWriter, r *http.Request) {
	l, err := a.shares().Revoke(r.Context(), principal(r).User, r.PathValue("id"), r.URL.Query().Get("reason"))
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, l)
}

// recordRetrievalDrill files a retrieval drill's run (broker/retrieval):
// the questions the CLI asked through this API and how long each took.
func (a *API) recordRetrievalDrill(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Questions []retrieval.Question `json:"questions"`
	}
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, http.StatusBadRequest, "bad_json", err.Error())
		return
	}
	run, err := retrieval.Record(r.Context(), a.o.Store, a.shareAudit, principal(r).User, a.o.Now(), in.Questions)
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusCreated, run)
}

func (a *API) retrievalDrills(w http.ResponseWriter, r *http.Request) {
	s, err := retrieval.Load(r.Context(), a.o.Store)
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, s)
}

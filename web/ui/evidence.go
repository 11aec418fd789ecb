package webui

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/web"
)

const evidenceReadme = `Custos evidence bundle
======================

session.json        the session's index entry (user, target, times, counters, manifest hash)
request.json        the access request the session ran under, with every decision
grant.json          the grant: window, approvers, reason, ticket, revocation
manifest.json       the recording's signed manifest, byte for byte as stored
verify-report.json  the broker's verification of the stored recording when this
                    bundle was made: chain, signature, retention (Object Lock)
audit-records.jsonl the audit log records of the request, its approvals, the
                    grant, the session and every access to its recording
audit-chain.json    the verification of the whole audit log's hash chain
SHA256SUMS          the SHA-256 of every file above

To check independently: sha256sum -c SHA256SUMS; the SHA-256 of manifest.json
equals session.json's manifest_hash and the manifest_sha256 of the
"session.recorded" audit record; each audit record's hash is the SHA-256 of
its canonical form (docs/audit-log.md) and links to the previous record;
"custos verify <session>" re-runs the recording checks against the store.
`

// evidence builds and sends a zip with the session's manifest, a fresh
// verify report and the audit records of its grant and approvals. The
// download is itself audited.
func (u *UI) evidence(w http.ResponseWriter, r *http.Request) {
	s, ok := u.authorize(w, r, r.PathValue("id"), "evidence bundle")
	if !ok {
		return
	}
	if u.o.Recordings == nil {
		web.WriteError(w, http.StatusServiceUnavailable, "no_recorder", "recordings are not available on this broker")
		return
	}
	if s.State == broker.SessionLive {
		web.WriteError(w, http.StatusConflict, "live", "the session is still being recorded")
		return
	}
	ctx := r.Context()
	p := principalFrom(ctx)
	rec, err := u.o.Audit.Append(ctx, audit.Entry{Actor: p.User, Action: "session.evidence.export", Target: s.Target,
		Outcome: broker.OutcomeSuccess, Reason: "evidence bundle",
		Details: map[string]any{"session_id": s.ID, "user": s.User, "manifest_sha256": s.ManifestHash, "via": "web"}})
	if err != nil {
		// An export that cannot be audited is refused.
		u.fail(w, fmt.Errorf("evidence: audit: %w", err))
		return
	}
	body, err := u.buildEvidence(ctx, s)
	if err != nil {
		u.log.Error("webui: evidence bundle", "session", s.ID, "audit_seq", rec.Seq, "err", err)
		web.WriteError(w, http.StatusBadGateway, "evidence_failed", "the evidence bundle could not be built: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="custos-evidence-%s.zip"`, s.ID))
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(body)
}

// buildEvidence assembles the bundle in memory: a few small JSON files and
// the manifest, never recording content.
func (u *UI) buildEvidence(ctx context.Context, s broker.Session) ([]byte, error) {
	manifest, err := u.o.Recordings.ManifestFile(ctx, s.ID)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	rep, err := u.o.Recordings.Verify(ctx, s.ID)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	u.verify.put(s, rep)
	var grant *broker.Grant
	var req *broker.Request
	if g, err := u.o.Access.GetGrant(ctx, s.GrantID); err == nil {
		grant = &g
		if q, err := u.o.Access.GetRequest(ctx, g.RequestID); err == nil {
			req = &q
		}
	}
	records, err := u.relatedAudit(ctx, s, grant, req)
	if err != nil {
		return nil, fmt.Errorf("audit records: %w", err)
	}
	chain, err := audit.Verify(ctx, u.o.Store)
	if err != nil {
		return nil, fmt.Errorf("audit chain: %w", err)
	}

	files := []struct {
		name string
		body []byte
	}{{"README.txt", []byte(evidenceReadme)}, {"manifest.json", manifest}}
	add := func(name string, v any) error {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		files = append(files, struct {
			name string
			body []byte
		}{name, append(b, '\n')})
		return nil
	}
	if err := add("session.json", s); err != nil {
		return nil, err
	}
	if req != nil {
		if err := add("request.json", req); err != nil {
			return nil, err
		}
	}
	if grant != nil {
		if err := add("grant.json", grant); err != nil {
			return nil, err
		}
	}
	if err := add("verify-report.json", rep); err != nil {
		return nil, err
	}
	var jl bytes.Buffer
	enc := json.NewEncoder(&jl)
	for _, r := range records {
		if err := enc.Encode(r); err != nil {
			return nil, err
		}
	}
	files = append(files, struct {
		name string
		body []byte
	}{"audit-records.jsonl", jl.Bytes()})
	if err := add("audit-chain.json", chain); err != nil {
		return nil, err
	}

	var sums bytes.Buffer
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	now := u.o.Now().UTC()
	for _, f := range files {
		sum := sha256.Sum256(f.body)
		fmt.Fprintf(&sums, "%s  %s\n", hex.EncodeToString(sum[:]), f.name)
		fw, err := zw.CreateHeader(&zip.FileHeader{Name: f.name, Method: zip.Deflate, Modified: now})
		if err != nil {
			return nil, err
		}
		if _, err := fw.Write(f.body); err != nil {
			return nil, err
		}
	}
	fw, err := zw.CreateHeader(&zip.FileHeader{Name: "SHA256SUMS", Method: zip.Deflate, Modified: now})
	if err != nil {
		return nil, err
	}
	if _, err := fw.Write(sums.Bytes()); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return zb.Bytes(), nil
}

// relatedAudit returns the audit records that mention the session, its
// grant or its request, in log order.
func (u *UI) relatedAudit(ctx context.Context, s broker.Session, g *broker.Grant, q *broker.Request) ([]broker.AuditRecord, error) {
	ids := map[string]bool{s.ID: true}
	since := s.StartedAt.Add(-24 * time.Hour)
	if g != nil {
		ids[g.ID] = true
		since = g.StartsAt.Add(-24 * time.Hour)
	}
	if q != nil {
		ids[q.ID] = true
		since = q.CreatedAt.Add(-time.Minute)
	}
	var out []broker.AuditRecord
	var after int64
	for {
		var page []broker.AuditRecord
		err := u.o.Store.View(ctx, func(tx broker.Tx) error {
			var err error
			page, err = tx.ListAudit(broker.AuditFilter{AfterSeq: after, Since: since, Limit: 1000})
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, r := range page {
			if mentions(r, ids) {
				out = append(out, r)
			}
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].Seq
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out, nil
}

// mentions reports whether a record's details name one of ids.
func mentions(r broker.AuditRecord, ids map[string]bool) bool {
	if ids[r.Target] {
		return true
	}
	if len(r.Details) == 0 {
		return false
	}
	var d map[string]any
	if json.Unmarshal(r.Details, &d) != nil {
		return false
	}
	for _, k := range []string{"session_id", "session", "grant_id", "request_id"} {
		if v, ok := d[k].(string); ok && ids[v] {
			return true
		}
	}
	return false
}

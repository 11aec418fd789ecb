// Package evidence builds Custos's evidence bundles, in one place for the
// API, the web UI and the CLI. A session's bundle (Build) is a zip with
// the session's index entry, the request and grant behind it, the
// recording's signed manifest byte for byte, a fresh verification report,
// the audit records that mention them, the audit chain's verification and
// a SHA256SUMS over all of it; it holds no recording content. A target's
// bundle for a period (Collect, BuildPeriod) holds its grants, requests
// and approvals, sessions with their commands and recording verdicts,
// break-glass events, access reviews and the audit chain segment with its
// verification, as an offline index.html with a page per session and as
// evidence.json (docs/evidence.schema.json), streamed as it is written.
package evidence

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/recorder"
)

// Recordings reads a stored recording's manifest and verifies it;
// *recorder.Recorder implements it.
type Recordings interface {
	ManifestFile(ctx context.Context, sessionID string) ([]byte, error)
	Verify(ctx context.Context, sessionID string) (*recorder.VerifyReport, error)
}

// Input is what a bundle is made from.
type Input struct {
	Session broker.Session
	// Grant and Request are the session's, when known.
	Grant   *broker.Grant
	Request *broker.Request
	// Recordings reads the manifest and verifies the recording.
	Recordings Recordings
	// Store holds the audit log.
	Store broker.Store
	// Now stamps the files in the zip.
	Now time.Time
}

// Readme is the bundle's README.txt.
const Readme = `Custos evidence bundle
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
signatures.txt      the electronic signatures of the request's decisions, when
                    its role requires them: printed name, UTC time, meaning,
                    method of re-authentication and the signed record's hash
SHA256SUMS          the SHA-256 of every file above

To check independently: sha256sum -c SHA256SUMS; the SHA-256 of manifest.json
equals session.json's manifest_hash and the manifest_sha256 of the
"session.recorded" audit record; each audit record's hash is the SHA-256 of
its canonical form (docs/audit-log.md) and links to the previous record;
"custos verify <session>" re-runs the recording checks against the store.
`

// Build assembles the bundle in memory: a few small JSON files and the
// manifest, never recording content. It also returns the fresh
// verification report it holds. The caller audits the export.
func Build(ctx context.Context, in Input) ([]byte, *recorder.VerifyReport, error) {
	s, grant, req := in.Session, in.Grant, in.Request
	manifest, err := in.Recordings.ManifestFile(ctx, s.ID)
	if err != nil {
		return nil, nil, fmt.Errorf("evidence: manifest: %w", err)
	}
	rep, err := in.Recordings.Verify(ctx, s.ID)
	if err != nil {
		return nil, nil, fmt.Errorf("evidence: verify: %w", err)
	}
	records, err := Related(ctx, in.Store, s, grant, req)
	if err != nil {
		return nil, nil, fmt.Errorf("evidence: audit records: %w", err)
	}
	chain, err := audit.Verify(ctx, in.Store)
	if err != nil {
		return nil, nil, fmt.Errorf("evidence: audit chain: %w", err)
	}
	b, err := zipBundle(in.Now, s, grant, req, manifest, rep, records, chain)
	if err != nil {
		return nil, nil, fmt.Errorf("evidence: %w", err)
	}
	return b, rep, nil
}

// zipBundle writes the files of the bundle and their SHA256SUMS.
func zipBundle(now time.Time, s broker.Session, grant *broker.Grant, req *broker.Request, manifest []byte,
	rep *recorder.VerifyReport, records []broker.AuditRecord, chain audit.Report) ([]byte, error) {
	files := []struct {
		name string
		body []byte
	}{{"README.txt", []byte(Readme)}, {"manifest.json", manifest}}
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
	if sigs := signatureLines(req); len(sigs) > 0 {
		files = append(files, struct {
			name string
			body []byte
		}{"signatures.txt", sigs})
	}

	var sums bytes.Buffer
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	now = now.UTC()
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

// Related returns the audit records that mention the session, its grant
// or its request, in log order.
func Related(ctx context.Context, st broker.Store, s broker.Session, g *broker.Grant, q *broker.Request) ([]broker.AuditRecord, error) {
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
		err := st.View(ctx, func(tx broker.Tx) error {
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

// signatureLines is signatures.txt: one manifestation per signed
// decision of req, or nil when none is signed.
func signatureLines(req *broker.Request) []byte {
	if req == nil {
		return nil
	}
	var b bytes.Buffer
	for _, d := range append(append([]broker.Decision{}, req.Approvals...), req.Denials...) {
		if d.Signature != nil {
			b.WriteString(d.Signature.Manifestation())
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

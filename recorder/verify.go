package recorder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/recorder/chunk"
	"github.com/custos-pam/custos/recorder/manifest"
	"github.com/custos-pam/custos/recorder/store"
)

// VerifyReport is the outcome of verifying a stored recording.
type VerifyReport struct {
	SessionID string `json:"session_id"`
	// Intact is true when every check passed: the recording is complete
	// and unaltered.
	Intact bool `json:"intact"`
	// Verdict is a one-line summary: "intact", "intact; N tampering
	// attempt(s) detected", or "FAILED: <first problem>".
	Verdict string `json:"verdict"`
	// Problems are failed checks, the first found first.
	Problems []Problem `json:"problems,omitempty"`
	// Tampering lists objects written, overwritten or delete-marked under
	// the recording's keys after the broker wrote them. The pinned
	// versions are what was verified; these are attempts.
	Tampering []Tampering `json:"tampering,omitempty"`

	State           string             `json:"state,omitempty"`
	StartedAt       time.Time          `json:"started_at,omitzero"`
	EndedAt         time.Time          `json:"ended_at,omitzero"`
	Chunks          int                `json:"chunks"`
	Events          int64              `json:"events"`
	Bytes           int64              `json:"bytes"`
	ManifestKey     string             `json:"manifest_key,omitempty"`
	ManifestVersion string             `json:"manifest_version,omitempty"`
	ManifestHash    string             `json:"manifest_sha256,omitempty"`
	SignedBy        string             `json:"signed_by,omitempty"`
	Retention       manifest.Retention `json:"retention"`
	Store           string             `json:"store,omitempty"`
	// Checks lists what was checked, in order.
	Checks []string `json:"checks"`
}

// Problem is one failed check. Chunk is the chunk's sequence number, 0 for
// a problem with the manifest itself.
type Problem struct {
	Chunk  uint64 `json:"chunk,omitempty"`
	Key    string `json:"key,omitempty"`
	Check  string `json:"check"`
	Detail string `json:"detail"`
}

func (p Problem) String() string {
	if p.Chunk > 0 {
		return fmt.Sprintf("chunk %d (%s): %s: %s", p.Chunk, p.Key, p.Check, p.Detail)
	}
	if p.Key != "" {
		return fmt.Sprintf("%s: %s: %s", p.Key, p.Check, p.Detail)
	}
	return fmt.Sprintf("%s: %s", p.Check, p.Detail)
}

// Tampering is an object version the broker did not write, or a delete
// marker, under a recording key.
type Tampering struct {
	Key          string    `json:"key"`
	VersionID    string    `json:"version_id,omitempty"`
	DeleteMarker bool      `json:"delete_marker,omitempty"`
	LastModified time.Time `json:"last_modified,omitzero"`
	// Pinned is the version the manifest pins for that key, if any.
	Pinned string `json:"pinned,omitempty"`
	Detail string `json:"detail"`
}

func (t Tampering) String() string {
	return fmt.Sprintf("%s: %s (version %s, %s)", t.Key, t.Detail, t.VersionID, t.LastModified.Format(time.RFC3339))
}

// FirstProblem returns the first problem as text, or "".
func (v *VerifyReport) FirstProblem() string {
	if len(v.Problems) == 0 {
		return ""
	}
	return v.Problems[0].String()
}

func (v *VerifyReport) fail(seq uint64, key, check, format string, args ...any) {
	v.Problems = append(v.Problems, Problem{Chunk: seq, Key: key, Check: check, Detail: fmt.Sprintf(format, args...)})
}

// storing reports whether this broker holds an ended session whose
// recording it has not finished storing (chunks or manifest to upload).
func (r *Recorder) storing(sessionID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.tracks[sessionID]
	return ok && t.end != nil
}

// verifyParallel is how many chunks Verify fetches at once.
const verifyParallel = 8

// Verify re-reads a stored recording and checks, without decrypting it:
// the manifest's signature against the trusted keys and its hash against
// the session index (the audited value); the header hash; every chunk at
// its pinned version (present, SHA-256, sequence number, session, chain
// link, event count); on an Object Lock store each object's COMPLIANCE
// retention and retain-until date (and legal hold when set); and every
// other version or object under the recording's keys, reported as a
// tampering attempt. The error is for failures to run the check (store
// unreachable); a recording that fails verification returns a report with
// Intact false.
func (r *Recorder) Verify(ctx context.Context, sessionID string) (*VerifyReport, error) {
	rep := &VerifyReport{SessionID: sessionID}
	defer rep.summarize()
	if w, ok := r.Live(sessionID); ok && w != nil {
		rep.State = "live"
		rep.fail(0, "", "manifest", "session is still being recorded")
		return rep, nil
	}
	loc, err := r.locate(ctx, sessionID)
	if loc != nil {
		rep.ManifestKey = loc.key
		for _, v := range loc.others {
			rep.Tampering = append(rep.Tampering, tamper(v, loc.versionID, "manifest"))
		}
	}
	if errors.Is(err, ErrNotFound) {
		rep.Checks = append(rep.Checks, "manifest present")
		switch {
		case loc != nil && loc.indexed != nil && loc.indexed.State == broker.SessionLive:
			rep.State = "live"
			rep.fail(0, rep.ManifestKey, "manifest", "not written yet: the session index says the session is live (or its broker died and has not restarted)")
		case r.storing(sessionID):
			// Ended here moments ago: its chunks or manifest are still
			// on their way to the store. Not a missing recording.
			rep.State = "pending"
			rep.fail(0, rep.ManifestKey, "manifest", "not written yet: the session has ended and this broker is still storing its recording")
		case loc != nil && loc.indexed != nil:
			rep.fail(0, rep.ManifestKey, "manifest", "missing: the session index records a %s session (manifest %s) but the store has no manifest",
				loc.indexed.State, orNone(loc.indexed.ManifestHash))
		default:
			rep.fail(0, rep.ManifestKey, "manifest", "missing: the recording's manifest is not in the store")
		}
		return rep, nil
	}
	if err != nil && (loc == nil || loc.raw == nil) {
		return nil, err
	}
	rep.ManifestVersion = loc.versionID
	rep.ManifestHash = manifest.HashFile(loc.raw)
	rep.Checks = append(rep.Checks, "manifest present")
	if err != nil {
		rep.fail(0, loc.key, "manifest", "unreadable: %v", err)
		return rep, nil
	}
	m := &loc.signed.Manifest
	rep.State, rep.StartedAt, rep.EndedAt = m.State, m.StartedAt, m.EndedAt
	rep.Chunks, rep.Events, rep.Bytes = len(m.Chunks), m.Events, m.Bytes
	rep.Retention, rep.Store = m.Retention, m.Store

	rep.Checks = append(rep.Checks, "manifest signature")
	if signer, err := loc.signed.Verify(r.trusted...); err != nil {
		rep.fail(0, loc.key, "signature", "%v", err)
	} else {
		rep.SignedBy = signer
	}
	rep.Checks = append(rep.Checks, "manifest belongs to the session: session id, header, prefix, audited hash")
	if check, detail := loc.bindingProblem(sessionID); check != "" {
		rep.fail(0, loc.key, check, "%s", detail)
	}
	rep.Checks = append(rep.Checks, "header hash")
	if hh := sha256.Sum256(m.Header); hex.EncodeToString(hh[:]) != m.HeaderHash {
		rep.fail(0, loc.key, "header hash", "header hashes to %x, manifest says %s", hh, m.HeaderHash)
	}
	lock := r.cfg.Store.ObjectLock()
	if lock {
		rep.Checks = append(rep.Checks, "manifest retention")
		r.checkRetention(ctx, rep, 0, loc.key, loc.versionID, m.Retention)
	}
	r.verifyChunks(ctx, rep, m, lock)
	r.verifyVersions(ctx, rep, m, loc)
	return rep, nil
}

// chunkResult is what a fetched chunk revealed.
type chunkResult struct {
	obj   store.Object
	err   error
	sum   [32]byte
	frame chunk.Frame
	ferr  error
}

func (r *Recorder) verifyChunks(ctx context.Context, rep *VerifyReport, m *manifest.Manifest, lock bool) {
	rep.Checks = append(rep.Checks, "chunks: present at pinned version, sha256, seq, session, chain, events")
	if lock {
		rep.Checks = append(rep.Checks, "chunks: COMPLIANCE retention until the manifest's date")
	}
	res := make([]chunkResult, len(m.Chunks))
	sem := make(chan struct{}, verifyParallel)
	var wg sync.WaitGroup
	for i, c := range m.Chunks {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			o, err := r.cfg.Store.Get(ctx, c.Key, c.VersionID)
			res[i] = chunkResult{obj: o, err: err}
			if err == nil {
				res[i].sum = sha256.Sum256(o.Body)
				res[i].frame, _, res[i].ferr = chunk.Parse(o.Body)
				res[i].obj.Body = nil
			}
		}()
	}
	wg.Wait()
	prev := m.HeaderHash
	for i, c := range m.Chunks {
		cr := res[i]
		switch {
		case c.Seq != uint64(i+1):
			rep.fail(c.Seq, c.Key, "manifest order", "manifest lists chunk %d at position %d", c.Seq, i+1)
		case c.Prev != prev:
			rep.fail(c.Seq, c.Key, "manifest chain", "manifest links it to %s, previous chunk is %s", c.Prev, prev)
		case errors.Is(cr.err, store.ErrNotFound):
			rep.fail(c.Seq, c.Key, "present", "missing (version %s)", orNone(c.VersionID))
		case cr.err != nil:
			rep.fail(c.Seq, c.Key, "present", "cannot read: %v", cr.err)
		case hex.EncodeToString(cr.sum[:]) != c.SHA256:
			rep.fail(c.Seq, c.Key, "sha256", "stored bytes hash to %x, manifest says %s%s", cr.sum, c.SHA256, framehint(cr, c.Seq))
		case cr.ferr != nil:
			rep.fail(c.Seq, c.Key, "frame", "%v", cr.ferr)
		case cr.frame.Seq != c.Seq:
			rep.fail(c.Seq, c.Key, "seq", "object holds chunk %d", cr.frame.Seq)
		case cr.frame.SessionID != m.SessionID:
			rep.fail(c.Seq, c.Key, "session", "object belongs to session %s", cr.frame.SessionID)
		case hex.EncodeToString(cr.frame.Prev[:]) != prev:
			rep.fail(c.Seq, c.Key, "chain", "links to %x, previous chunk is %s", cr.frame.Prev, prev)
		case cr.frame.Events != c.Events:
			rep.fail(c.Seq, c.Key, "events", "holds %d events, manifest says %d", cr.frame.Events, c.Events)
		}
		if lock && cr.err == nil {
			r.checkRetentionOf(rep, c.Seq, c.Key, cr.obj, m.Retention)
		}
		prev = c.SHA256
	}
	if len(m.Chunks) > 0 && m.ChainHead != m.Chunks[len(m.Chunks)-1].SHA256 ||
		len(m.Chunks) == 0 && m.ChainHead != m.HeaderHash {
		rep.fail(0, "", "chain head", "manifest chain head %s is not its last chunk", m.ChainHead)
	}
}

// framehint names the chunk an object actually holds when it is another
// chunk of the session (reordered objects).
func framehint(cr chunkResult, seq uint64) string {
	if cr.ferr == nil && cr.frame.Seq != seq {
		return fmt.Sprintf(" (the object holds chunk %d)", cr.frame.Seq)
	}
	return ""
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (r *Recorder) checkRetention(ctx context.Context, rep *VerifyReport, seq uint64, key, version string, want manifest.Retention) {
	o, err := r.cfg.Store.Get(ctx, key, version)
	if err != nil {
		rep.fail(seq, key, "retention", "cannot read: %v", err)
		return
	}
	r.checkRetentionOf(rep, seq, key, o, want)
}

func (r *Recorder) checkRetentionOf(rep *VerifyReport, seq uint64, key string, o store.Object, want manifest.Retention) {
	switch {
	case o.RetentionMode != "COMPLIANCE":
		rep.fail(seq, key, "retention", "mode is %q, want COMPLIANCE", o.RetentionMode)
	case o.RetainUntil.Before(want.Until.Add(-time.Second)):
		rep.fail(seq, key, "retention", "retained until %s, manifest requires %s",
			o.RetainUntil.Format(time.RFC3339), want.Until.Format(time.RFC3339))
	case want.LegalHold && !o.LegalHold:
		rep.fail(seq, key, "legal hold", "not under legal hold")
	}
}

// verifyVersions reports every object version under the session's prefix
// that the manifest does not pin.
func (r *Recorder) verifyVersions(ctx context.Context, rep *VerifyReport, m *manifest.Manifest, loc *located) {
	rep.Checks = append(rep.Checks, "no other object versions under the recording's keys")
	vs, err := r.cfg.Store.Versions(ctx, loc.prefix)
	if err != nil {
		rep.fail(0, loc.prefix, "versions", "cannot list: %v", err)
		return
	}
	pinned := map[string]string{loc.key: loc.versionID}
	for _, c := range m.Chunks {
		pinned[c.Key] = c.VersionID
	}
	for _, v := range vs {
		if v.Key == loc.key {
			continue // the manifest's own versions were classified by locate
		}
		pin, ok := pinned[v.Key]
		switch {
		case !ok:
			rep.Tampering = append(rep.Tampering, tamper(v, "", ""))
		case v.DeleteMarker || v.VersionID != pin:
			rep.Tampering = append(rep.Tampering, tamper(v, pin, "chunk"))
		}
	}
	sort.SliceStable(rep.Tampering, func(i, j int) bool { return rep.Tampering[i].Key < rep.Tampering[j].Key })
}

// tamper describes an unpinned version under a recording key; what names
// the object ("manifest" or "chunk").
func tamper(v store.Version, pinned, what string) Tampering {
	t := Tampering{Key: v.Key, VersionID: v.VersionID, DeleteMarker: v.DeleteMarker,
		LastModified: v.LastModified, Pinned: pinned}
	switch {
	case what == "":
		t.Detail = "object not in the manifest"
	case v.DeleteMarker:
		t.Detail = "delete marker placed over the " + what
	default:
		t.Detail = "another version written over the " + what
	}
	return t
}

func (v *VerifyReport) summarize() {
	v.Intact = len(v.Problems) == 0
	switch {
	case !v.Intact:
		v.Verdict = "FAILED: " + v.FirstProblem()
	case len(v.Tampering) > 0:
		v.Verdict = fmt.Sprintf("intact; %d tampering attempt(s) detected: %s", len(v.Tampering), v.Tampering[0])
	default:
		v.Verdict = "intact"
	}
}

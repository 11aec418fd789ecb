package recorder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/recorder/chunk"
	"github.com/custos-pam/custos/recorder/event"
	"github.com/custos-pam/custos/recorder/manifest"
)

// Spool marks of finalization progress.
const (
	auditedMark = "audited"
)

// finalize stores an ended session's manifest, audits its hash, writes the
// final index entry and clears the spool. Each step is marked in the spool,
// so a retry (or a restarted broker) resumes where it stopped.
func (r *Recorder) finalize(j job) {
	t := j.t
	if err := r.finalizeSteps(t); err != nil {
		if r.ctx.Err() != nil {
			return // shutting down: the spool keeps the session for the next start
		}
		r.log.Warn("recorder: finalize session, will retry", "session", t.id, "attempt", j.attempts+1, "err", err)
		r.retry(j)
		return
	}
	r.mu.Lock()
	delete(r.tracks, t.id)
	freed := t.chunkBytes()
	r.mu.Unlock()
	r.forceSpool(-freed)
}

func (r *Recorder) finalizeSteps(t *track) error {
	mb, err := t.sp.ReadFile(manifestFile)
	if errors.Is(err, fs.ErrNotExist) {
		mb, err = r.buildManifest(t)
		if err == nil {
			err = t.sp.WriteFile(manifestFile, mb)
		}
	}
	if err != nil {
		return err
	}
	signed, err := manifest.Parse(mb)
	if err != nil {
		return err
	}
	m := &signed.Manifest
	key := t.meta.Prefix + manifestName

	var mark uploadMark
	if b, err := t.sp.ReadFile(manifestFile + uploadedExt); err == nil {
		err = json.Unmarshal(b, &mark)
		if err != nil {
			return fmt.Errorf("recorder: manifest upload mark: %w", err)
		}
	} else {
		vid, err := r.put(key, mb, sha256.Sum256(mb), t.meta, true)
		if err != nil {
			r.storeFailed(err)
			return err
		}
		r.storeOK()
		mark.VersionID = vid
		b, _ := json.Marshal(mark)
		if err := t.sp.WriteFile(manifestFile+uploadedExt, b); err != nil {
			return err
		}
	}

	if _, err := t.sp.ReadFile(auditedMark); err != nil {
		var h event.Header
		json.Unmarshal(m.Header, &h)
		ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
		err := r.audit(ctx, audit.Entry{
			Actor: "broker", Action: "session.recorded", Target: h.Target,
			Outcome: broker.OutcomeSuccess, Reason: m.EndReason,
			Details: map[string]any{
				"session_id": m.SessionID, "user": h.User, "state": m.State,
				"manifest_key": key, "manifest_version": mark.VersionID, "manifest_sha256": signed.Hash,
				"chunks": len(m.Chunks), "events": m.Events, "chain_head": m.ChainHead,
				"signer": signed.Signature.KeyID,
			},
		})
		cancel()
		if err != nil {
			return fmt.Errorf("recorder: audit manifest: %w", err)
		}
		if err := t.sp.WriteFile(auditedMark, []byte(signed.Hash)); err != nil {
			return err
		}
	}

	if r.cfg.Index != nil {
		var h event.Header
		if err := json.Unmarshal(m.Header, &h); err != nil {
			return fmt.Errorf("recorder: manifest header: %w", err)
		}
		r.mu.Lock()
		st := t.stats
		r.mu.Unlock()
		reason := endReason(endInfo{By: m.EndedBy, Reason: m.EndReason})
		entry := func() broker.Session {
			return sessionEntry(h, broker.SessionState(m.State), st, m.EndedAt, signed.Hash, reason)
		}
		if err := t.putIndex(r, entry, true); err != nil {
			return fmt.Errorf("recorder: session index: %w", err)
		}
	}
	r.log.Info("recorder: session stored", "session", t.id, "state", m.State, "chunks", len(m.Chunks),
		"events", m.Events, "manifest_sha256", signed.Hash)
	return t.sp.Remove()
}

// buildManifest assembles and signs the manifest of an ended session whose
// chunks are all uploaded.
func (r *Recorder) buildManifest(t *track) ([]byte, error) {
	r.mu.Lock()
	end := *t.end
	chunks := append([]chunkInfo(nil), t.chunks...)
	r.mu.Unlock()
	m := &manifest.Manifest{
		Format: manifest.Format, Version: manifest.Version, SessionID: t.id,
		Header: t.meta.Header, HeaderHash: t.meta.HeaderHash,
		State: end.State, EndedBy: end.By, EndReason: end.Reason,
		StartedAt: t.meta.StartedAt, EndedAt: end.EndedAt.UTC(),
		Cipher: "AES-256-GCM", Key: t.meta.Key, Prefix: t.meta.Prefix,
		ChainHead: t.meta.HeaderHash,
		Retention: manifest.Retention{Until: t.meta.RetainUntil.UTC(), LegalHold: t.meta.LegalHold},
		Store:     r.cfg.Store.Kind(), CreatedAt: time.Now().UTC(),
	}
	if r.cfg.Store.ObjectLock() {
		m.Retention.Mode = "COMPLIANCE"
	}
	for _, c := range chunks {
		if c.Lost {
			// The chain cannot continue past a lost chunk.
			m.State, m.EndedBy = stateInterrupted, ""
			m.EndReason = fmt.Sprintf("spooled chunk %d was lost before upload; the recording ends before it", c.Seq)
			break
		}
		if !c.Uploaded {
			return nil, fmt.Errorf("recorder: manifest: chunk %d not uploaded", c.Seq)
		}
		m.Chunks = append(m.Chunks, manifest.Chunk{
			Seq: c.Seq, Key: t.meta.Prefix + chunk.ObjectName(c.Seq), VersionID: c.VersionID,
			SHA256: hex.EncodeToString(c.Hash[:]), Prev: hex.EncodeToString(c.Prev[:]),
			Size: c.Size, Events: c.Events, First: c.First, Last: c.Last, Sealed: c.Sealed,
		})
		m.Events += int64(c.Events)
		m.Bytes += c.Size
		m.ChainHead = hex.EncodeToString(c.Hash[:])
	}
	b, _, err := manifest.Sign(m, r.cfg.Signer)
	return b, err
}

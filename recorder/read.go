package recorder

import (
	"bufio"
	"context"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/recorder/chunk"
	"github.com/custos-pam/custos/recorder/event"
	"github.com/custos-pam/custos/recorder/manifest"
)

// Access says who reads a recording and why; every Open is audited with it.
type Access struct {
	// Actor is the reading user's identity. Required.
	Actor string
	// Purpose says what the read is for, e.g. "play", "export asciicast",
	// "web replay". Default: "read".
	Purpose string
}

// ErrIntegrity is returned when stored recording data fails its checks
// while being read; run Verify for the full report.
var ErrIntegrity = errors.New("recording integrity check failed")

// Recording is an opened, decryptable recording.
type Recording struct {
	r        *Recorder
	m        *manifest.Manifest
	hash     string
	header   event.Header
	aead     cipher.AEAD
	signedBy string
}

// Open opens a stored recording for reading. It checks the manifest's
// signature and that the manifest is session sessionID's own (see
// bindingProblem: a manifest copied from another session is refused with
// ErrIntegrity), writes an audit record of the access ("session.recording.read",
// actor a.Actor) and only then unwraps the data key: an access that cannot
// be audited is refused.
func (r *Recorder) Open(ctx context.Context, sessionID string, a Access) (*Recording, error) {
	if a.Actor == "" {
		return nil, errors.New("recorder: open: the reader's identity is required")
	}
	if a.Purpose == "" {
		a.Purpose = "read"
	}
	loc, err := r.locate(ctx, sessionID)
	if err != nil {
		return nil, err
	}
	signer, err := loc.signed.Verify(r.trusted...)
	if err != nil {
		return nil, fmt.Errorf("recorder: open %s: %w: %w", sessionID, ErrIntegrity, err)
	}
	if check, detail := loc.bindingProblem(sessionID); check != "" {
		return nil, fmt.Errorf("recorder: open %s: %w: %s: %s", sessionID, ErrIntegrity, check, detail)
	}
	m := &loc.signed.Manifest
	var h event.Header
	if err := json.Unmarshal(m.Header, &h); err != nil {
		return nil, fmt.Errorf("recorder: open %s: header: %w", sessionID, err)
	}
	if r.cfg.Audit == nil {
		return nil, fmt.Errorf("recorder: open %s: reading a recording must be audited, and no audit log is configured", sessionID)
	}
	err = r.audit(ctx, audit.Entry{
		Actor: a.Actor, Action: "session.recording.read", Target: h.Target, Outcome: broker.OutcomeSuccess,
		Reason: a.Purpose,
		Details: map[string]any{"session_id": sessionID, "user": h.User, "manifest_sha256": loc.signed.Hash,
			"purpose": a.Purpose},
	})
	if err != nil {
		return nil, fmt.Errorf("recorder: open %s: audit: %w", sessionID, err)
	}
	key, err := r.cfg.Keys.Unwrap(ctx, m.Key)
	if err != nil {
		return nil, fmt.Errorf("recorder: open %s: data key: %w", sessionID, err)
	}
	aead, err := chunk.NewAEAD(key)
	clear(key)
	if err != nil {
		return nil, fmt.Errorf("recorder: open %s: %w", sessionID, err)
	}
	return &Recording{r: r, m: m, hash: loc.signed.Hash, header: h, aead: aead, signedBy: signer}, nil
}

// Header returns the session header.
func (rec *Recording) Header() event.Header { return rec.header }

// Manifest returns the verified manifest.
func (rec *Recording) Manifest() manifest.Manifest { return *rec.m }

// ManifestHash returns the hex SHA-256 of the manifest file.
func (rec *Recording) ManifestHash() string { return rec.hash }

// Events yields the recording's events in order. Each chunk is read at its
// pinned version and must match the manifest's hash before it is
// decrypted; a mismatch yields an error wrapping ErrIntegrity and ends the
// sequence.
func (rec *Recording) Events(ctx context.Context) iter.Seq2[event.Event, error] {
	return func(yield func(event.Event, error) bool) {
		for _, c := range rec.m.Chunks {
			pt, err := rec.chunk(ctx, c)
			if err != nil {
				yield(event.Event{}, err)
				return
			}
			d := event.NewDecoder(pt)
			var e event.Event
			for d.Next(&e) {
				if !yield(e, nil) {
					return
				}
			}
			if err := d.Err(); err != nil {
				yield(event.Event{}, fmt.Errorf("recorder: chunk %d: %w: %w", c.Seq, ErrIntegrity, err))
				return
			}
		}
	}
}

func (rec *Recording) chunk(ctx context.Context, c manifest.Chunk) ([]byte, error) {
	o, err := rec.r.cfg.Store.Get(ctx, c.Key, c.VersionID)
	if err != nil {
		return nil, fmt.Errorf("recorder: chunk %d: %w", c.Seq, err)
	}
	sum := sha256.Sum256(o.Body)
	if hex.EncodeToString(sum[:]) != c.SHA256 {
		return nil, fmt.Errorf("recorder: chunk %d: %w: sha256 mismatch", c.Seq, ErrIntegrity)
	}
	f, pt, err := chunk.Open(rec.aead, o.Body)
	if err != nil {
		return nil, fmt.Errorf("recorder: chunk %d: %w: %w", c.Seq, ErrIntegrity, err)
	}
	if f.Seq != c.Seq || f.SessionID != rec.m.SessionID {
		return nil, fmt.Errorf("recorder: chunk %d: %w: holds chunk %d of %s", c.Seq, ErrIntegrity, f.Seq, f.SessionID)
	}
	return pt, nil
}

// jsonlHeader is the first line of a JSONL export.
type jsonlHeader struct {
	Format       string       `json:"format"`
	Header       event.Header `json:"header"`
	State        string       `json:"state"`
	EndedAt      time.Time    `json:"ended_at"`
	ManifestHash string       `json:"manifest_sha256"`
	SignedBy     string       `json:"signed_by"`
}

// ExportJSONL writes the recording as JSON lines: first an object with the
// header, final state and manifest hash, then one object per event (see
// event.Event's JSON form).
func (rec *Recording) ExportJSONL(ctx context.Context, w io.Writer) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(jsonlHeader{Format: "custos-recording-jsonl/1", Header: rec.header, State: rec.m.State,
		EndedAt: rec.m.EndedAt, ManifestHash: rec.hash, SignedBy: rec.signedBy}); err != nil {
		return fmt.Errorf("recorder: export: %w", err)
	}
	for e, err := range rec.Events(ctx) {
		if err != nil {
			return err
		}
		if err := enc.Encode(e); err != nil {
			return fmt.Errorf("recorder: export: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("recorder: export: %w", err)
	}
	return nil
}

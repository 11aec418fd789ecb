package recorder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/custos-pam/custos/recorder/chunk"
	"github.com/custos-pam/custos/recorder/event"
	"github.com/custos-pam/custos/recorder/spool"
)

// recover takes over the sessions a previous process left in the spool.
// A session that cannot be read stays in the spool, logged, for an
// operator; it does not stop the broker.
func (r *Recorder) recover(ctx context.Context) error {
	ids, err := r.spool.Sessions()
	if err != nil {
		return fmt.Errorf("recorder: recover: %w", err)
	}
	for _, id := range ids {
		if err := r.recoverSession(ctx, id); err != nil {
			r.log.Error("recorder: recover spooled session", "session", id, "err", err)
		}
	}
	return nil
}

func (r *Recorder) recoverSession(ctx context.Context, id string) error {
	sp, err := r.spool.Session(id)
	if err != nil {
		return err
	}
	if err := sp.RemoveTemp(); err != nil {
		return err
	}
	mb, err := sp.ReadFile(metaFile)
	if errors.Is(err, fs.ErrNotExist) {
		// Start never completed: nothing was recorded or relayed.
		r.log.Info("recorder: removing a session that never started", "session", id)
		return sp.Remove()
	}
	if err != nil {
		return err
	}
	t := &track{id: id, sp: sp}
	if err := json.Unmarshal(mb, &t.meta); err != nil {
		return fmt.Errorf("recorder: %s: %w", metaFile, err)
	}
	seqs, err := sp.Chunks()
	if err != nil {
		return err
	}
	prev, err := hexHash(t.meta.HeaderHash)
	if err != nil {
		return fmt.Errorf("recorder: %s: header hash: %w", metaFile, err)
	}
	marks, err := readMarks(sp)
	if err != nil {
		return err
	}
	for i, seq := range seqs {
		b, err := sp.ReadChunk(seq)
		if err != nil {
			return err
		}
		f, _, err := chunk.Parse(b)
		if seq != uint64(i+1) || err != nil || f.Seq != seq || f.Prev != prev || f.SessionID != id {
			// Only a complete, chained prefix of chunks can be vouched
			// for; anything after a break stays in the spool dir.
			r.log.Error("recorder: spooled chunk out of chain; later chunks are not uploaded",
				"session", id, "seq", seq, "err", err)
			break
		}
		ci := chunkInfo{Seq: seq, Hash: chunk.Hash(b), Prev: prev, Size: int64(len(b)),
			Events: f.Events, First: f.First, Last: f.Last, Sealed: f.Sealed}
		if vid, ok := marks[seq]; ok {
			ci.VersionID, ci.Uploaded = vid, true
		} else if mk, err := sp.ReadFile(chunk.ObjectName(seq) + uploadedExt); err == nil {
			// A mark file, as spools kept them before the upload log.
			var m uploadMark
			if json.Unmarshal(mk, &m) == nil {
				ci.VersionID, ci.Uploaded = m.VersionID, true
			}
		}
		t.chunks = append(t.chunks, ci)
		prev = ci.Hash
	}

	var end endInfo
	if eb, err := sp.ReadFile(endFile); err == nil && json.Unmarshal(eb, &end) == nil {
		r.log.Info("recorder: resuming upload of a closed session", "session", id, "chunks", len(t.chunks))
	} else {
		end = endInfo{State: stateInterrupted, Reason: "the broker stopped before the session ended",
			EndedAt: t.meta.StartedAt}
		if n := len(t.chunks); n > 0 {
			end.EndedAt = t.meta.StartedAt.Add(t.chunks[n-1].Last)
		}
		if b, err := json.Marshal(end); err == nil {
			if err := sp.WriteFile(endFile, b); err != nil {
				return err
			}
		}
		r.log.Warn("recorder: closing an interrupted session", "session", id, "chunks", len(t.chunks),
			"last_offset", end.EndedAt.Sub(t.meta.StartedAt))
	}
	t.end = &end
	t.stats = r.recoverStats(ctx, t)

	r.mu.Lock()
	defer r.mu.Unlock()
	r.tracks[id] = t
	r.forceSpool(t.chunkBytes())
	for _, c := range t.chunks {
		if !c.Uploaded {
			r.enqueue(job{t: t, seq: c.Seq, check: true})
		}
	}
	r.maybeFinalize(t)
	return nil
}

// readMarks reads the upload log: chunk sequence number to version id.
// A line a crash cut short is skipped; that chunk is looked up again.
func readMarks(sp *spool.Session) (map[uint64]string, error) {
	lines, err := sp.ReadLog(uploadLog)
	if err != nil {
		return nil, err
	}
	marks := make(map[uint64]string, len(lines))
	for _, l := range lines {
		var m uploadMark
		if json.Unmarshal(l, &m) == nil && m.Seq > 0 {
			marks[m.Seq] = m.VersionID
		}
	}
	return marks, nil
}

// recoverStats rebuilds a recovered session's index stats from its spooled
// chunks, falling back to the index entry written while it was live.
func (r *Recorder) recoverStats(ctx context.Context, t *track) indexStats {
	st, err := r.statsFromChunks(ctx, t)
	if err == nil {
		return st
	}
	r.log.Warn("recorder: cannot rebuild session stats from the spool", "session", t.id, "err", err)
	if r.cfg.Index != nil {
		if s, err := r.cfg.Index.GetSession(ctx, t.id); err == nil {
			return indexStats{Bytes: s.Bytes, Statements: s.Statements, Index: s.Index}
		}
	}
	return indexStats{}
}

func (r *Recorder) statsFromChunks(ctx context.Context, t *track) (indexStats, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	key, err := r.cfg.Keys.Unwrap(ctx, t.meta.Key)
	if err != nil {
		return indexStats{}, err
	}
	aead, err := chunk.NewAEAD(key)
	clear(key)
	if err != nil {
		return indexStats{}, err
	}
	ix := newIndexer(t.meta.IndexSQL)
	for _, c := range t.chunks {
		b, err := t.sp.ReadChunk(c.Seq)
		if err != nil {
			return indexStats{}, err
		}
		_, pt, err := chunk.Open(aead, b)
		if err != nil {
			return indexStats{}, err
		}
		d := event.NewDecoder(pt)
		var e event.Event
		for d.Next(&e) {
			ix.observe(&e)
		}
		if err := d.Err(); err != nil {
			return indexStats{}, err
		}
	}
	return ix.stats(), nil
}

package recorder

import (
	"context"
	"fmt"

	"github.com/custos-pam/custos/recorder/event"
)

// ChunkEvents decodes the events of the manifest's i-th chunk (0-based, in
// Manifest().Chunks order), checked against the manifest like Events. A
// player uses it to start reading in the middle of a recording, at the
// chunk a seek index points to, without reading what comes before.
func (rec *Recording) ChunkEvents(ctx context.Context, i int) ([]event.Event, error) {
	if i < 0 || i >= len(rec.m.Chunks) {
		return nil, fmt.Errorf("recorder: chunk index %d out of range (%d chunks)", i, len(rec.m.Chunks))
	}
	c := rec.m.Chunks[i]
	pt, err := rec.chunk(ctx, c)
	if err != nil {
		return nil, err
	}
	out := make([]event.Event, 0, c.Events)
	d := event.NewDecoder(pt)
	for {
		var e event.Event
		if !d.Next(&e) {
			break
		}
		out = append(out, e)
	}
	if err := d.Err(); err != nil {
		return nil, fmt.Errorf("recorder: chunk %d: %w: %w", c.Seq, ErrIntegrity, err)
	}
	return out, nil
}

// ManifestFile returns the stored, signed manifest file of a closed
// recording: the exact bytes Verify checks, for an evidence bundle. It
// reads no session content (the data key in it is wrapped), so it is not
// audited as a read; callers audit the export they build from it.
func (r *Recorder) ManifestFile(ctx context.Context, sessionID string) ([]byte, error) {
	loc, err := r.locate(ctx, sessionID)
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), loc.raw...), nil
}

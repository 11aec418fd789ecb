package recorder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/recorder/event"
	"github.com/custos-pam/custos/recorder/manifest"
	"github.com/custos-pam/custos/recorder/store"
)

// located is a session's manifest as found in the store.
type located struct {
	prefix    string
	key       string
	versionID string
	raw       []byte
	signed    *manifest.Signed
	// others are the manifest key's other versions and delete markers.
	others []store.Version
	// expected is the manifest hash the index recorded, if known.
	expected string
	// indexed is the session's index entry, when there is one.
	indexed *broker.Session
}

// locate finds a session's manifest. The session index gives the start
// date (and so the prefix) and the manifest hash that was audited; without
// an index entry the store is searched. When the manifest key has several
// versions, the one whose hash the index recorded is authentic, else the
// oldest: the broker writes a manifest exactly once.
func (r *Recorder) locate(ctx context.Context, id string) (*located, error) {
	if err := event.ValidSessionID(id); err != nil {
		return nil, fmt.Errorf("recorder: %w", err)
	}
	loc := &located{}
	if r.cfg.Index != nil {
		if s, err := r.cfg.Index.GetSession(ctx, id); err == nil {
			loc.prefix = r.sessionPrefix(id, s.StartedAt)
			loc.expected = s.ManifestHash
			loc.indexed = &s
		}
	}
	if loc.prefix == "" {
		p, err := r.findPrefix(ctx, id)
		if err != nil {
			return nil, err
		}
		loc.prefix = p
	}
	loc.key = loc.prefix + manifestName
	vs, err := r.cfg.Store.Versions(ctx, loc.key)
	if err != nil {
		return nil, fmt.Errorf("recorder: %s: %w", id, err)
	}
	var cands []store.Version
	for _, v := range vs {
		if v.Key != loc.key {
			continue
		}
		if v.DeleteMarker {
			loc.others = append(loc.others, v)
			continue
		}
		cands = append(cands, v)
	}
	if len(cands) == 0 {
		return loc, fmt.Errorf("recorder: session %s: manifest %s: %w", id, loc.key, ErrNotFound)
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].LastModified.Before(cands[j].LastModified) })
	pick := -1
	bodies := make([][]byte, len(cands))
	for i, v := range cands {
		o, err := r.cfg.Store.Get(ctx, loc.key, v.VersionID)
		if err != nil {
			return loc, fmt.Errorf("recorder: session %s: %w", id, err)
		}
		bodies[i] = o.Body
		sum := sha256.Sum256(o.Body)
		if loc.expected != "" && hex.EncodeToString(sum[:]) == loc.expected {
			pick = i
		}
	}
	if pick < 0 {
		pick = 0
	}
	for i, v := range cands {
		if i != pick {
			loc.others = append(loc.others, v)
		}
	}
	loc.versionID, loc.raw = cands[pick].VersionID, bodies[pick]
	loc.signed, err = manifest.Parse(loc.raw)
	if err != nil {
		return loc, fmt.Errorf("recorder: session %s: %w", id, err)
	}
	return loc, nil
}

// findPrefix searches the store for a session's prefix.
func (r *Recorder) findPrefix(ctx context.Context, id string) (string, error) {
	keys, err := r.cfg.Store.List(ctx, r.cfg.Prefix+"sessions/")
	if err != nil {
		return "", fmt.Errorf("recorder: find session %s: %w", id, err)
	}
	for _, k := range keys {
		if i := strings.Index(k, "/"+id+"/"); i >= 0 {
			return k[:i+len(id)+2], nil
		}
	}
	return "", fmt.Errorf("recorder: session %s: %w", id, ErrNotFound)
}

// Stored is a recording listed from the store.
type Stored struct {
	SessionID string
	// Prefix is the session's object key prefix.
	Prefix string
	// Closed reports that the manifest exists.
	Closed bool
}

// List lists the recordings in the store that started between since and
// until (UTC days, inclusive; zero values mean no bound), without reading
// them. It lets an operator find recordings the session index lacks.
func (r *Recorder) List(ctx context.Context, since, until time.Time) ([]Stored, error) {
	keys, err := r.cfg.Store.List(ctx, r.cfg.Prefix+"sessions/")
	if err != nil {
		return nil, fmt.Errorf("recorder: list: %w", err)
	}
	byID := map[string]*Stored{}
	var out []*Stored
	for _, k := range keys {
		rest := strings.TrimPrefix(k, r.cfg.Prefix+"sessions/")
		parts := strings.Split(rest, "/")
		if len(parts) != 5 {
			continue
		}
		day, err := time.Parse("2006/01/02", strings.Join(parts[:3], "/"))
		if err != nil {
			continue
		}
		if !since.IsZero() && day.Before(since.UTC().Truncate(24*time.Hour)) ||
			!until.IsZero() && day.After(until.UTC()) {
			continue
		}
		s := byID[parts[3]]
		if s == nil {
			s = &Stored{SessionID: parts[3], Prefix: r.cfg.Prefix + "sessions/" + strings.Join(parts[:4], "/") + "/"}
			byID[parts[3]] = s
			out = append(out, s)
		}
		if parts[4] == manifestName {
			s.Closed = true
		}
	}
	res := make([]Stored, len(out))
	for i, s := range out {
		res[i] = *s
	}
	return res, nil
}

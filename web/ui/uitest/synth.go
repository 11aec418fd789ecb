package uitest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/recorder"
	"github.com/custos-pam/custos/recorder/chunk"
	"github.com/custos-pam/custos/recorder/event"
	"github.com/custos-pam/custos/recorder/keywrap"
	"github.com/custos-pam/custos/recorder/manifest"
	"github.com/custos-pam/custos/recorder/store"
)

// Synth writes recordings with chosen event offsets directly in the stored
// format (encrypted, chained chunks and a signed manifest, indexed and
// audited as the recorder does), so tests can have a multi-hour session
// without waiting for it. The recorder reads and verifies them like any
// other.
type Synth struct {
	Store  recorder.ObjectStore
	Signer *manifest.Signer
	Keys   *keywrap.Local
	State  broker.Store
	Audit  *audit.Log
	// ChunkInterval and ChunkSize close chunks as the recorder's writer
	// does. Defaults: 1s and 1 MiB.
	ChunkInterval time.Duration
	ChunkSize     int
}

// Write stores a closed recording of h with the events given (offsets
// from h.StartedAt, non-decreasing), ended at end, and returns its index
// entry. searchText is the session's search index.
func (s *Synth) Write(ctx context.Context, h event.Header, events []event.Event, end time.Duration, searchText string) (broker.Session, error) {
	h.Version = event.FormatVersion
	h.StartedAt = h.StartedAt.UTC()
	if err := h.Validate(); err != nil {
		return broker.Session{}, err
	}
	if s.ChunkInterval <= 0 {
		s.ChunkInterval = time.Second
	}
	if s.ChunkSize <= 0 {
		s.ChunkSize = 1 << 20
	}
	key, wrapped, err := s.Keys.NewDataKey(ctx)
	if err != nil {
		return broker.Session{}, err
	}
	aead, err := chunk.NewAEAD(key)
	if err != nil {
		return broker.Session{}, err
	}
	hdr, err := h.Encode()
	if err != nil {
		return broker.Session{}, err
	}
	hh := event.HashHeader(hdr)
	prefix := path.Join("sessions", h.StartedAt.Format("2006/01/02"), h.SessionID) + "/"
	m := &manifest.Manifest{
		Format: manifest.Format, Version: manifest.Version, SessionID: h.SessionID,
		Header: hdr, HeaderHash: hex.EncodeToString(hh[:]), State: manifest.StateClosed,
		StartedAt: h.StartedAt, EndedAt: h.StartedAt.Add(end), Cipher: "AES-256-GCM", Key: wrapped,
		Prefix: prefix, ChainHead: hex.EncodeToString(hh[:]),
		Retention: manifest.Retention{Until: h.StartedAt.Add(recorder.DefaultRetention).Truncate(time.Second)},
		Store:     s.Store.Kind(), CreatedAt: time.Now().UTC(),
	}
	all := make([]event.Event, 0, len(events)+2)
	all = append(all, event.Event{Kind: event.KindStart})
	all = append(all, events...)
	all = append(all, event.Event{Kind: event.KindEnd, Op: "closed", Offset: end})

	prev := hh
	var buf []byte
	var n uint32
	var first, last time.Duration
	var bytes, statements int64
	flush := func() error {
		if n == 0 {
			return nil
		}
		seq := uint64(len(m.Chunks) + 1)
		f := chunk.Frame{SessionID: h.SessionID, Seq: seq, Prev: prev, Events: n, First: first, Last: last,
			Sealed: h.StartedAt.Add(last)}
		b, err := chunk.Seal(aead, f, buf, rand.Reader)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		k := prefix + chunk.ObjectName(seq)
		vid, err := s.Store.Put(ctx, k, b, store.PutOptions{SHA256: hex.EncodeToString(sum[:])})
		if err != nil {
			return err
		}
		m.Chunks = append(m.Chunks, manifest.Chunk{Seq: seq, Key: k, VersionID: vid, SHA256: hex.EncodeToString(sum[:]),
			Prev: hex.EncodeToString(prev[:]), Size: int64(len(b)), Events: n, First: first, Last: last, Sealed: f.Sealed})
		m.Events += int64(n)
		m.Bytes += int64(len(b))
		m.ChainHead = hex.EncodeToString(sum[:])
		prev, buf, n = sum, buf[:0], 0
		return nil
	}
	var lastOff time.Duration
	for i := range all {
		e := &all[i]
		if e.Offset < lastOff {
			return broker.Session{}, fmt.Errorf("synth: event %d goes back in time", i)
		}
		lastOff = e.Offset
		if n > 0 && (e.Offset-first >= s.ChunkInterval || len(buf) >= s.ChunkSize) {
			if err := flush(); err != nil {
				return broker.Session{}, err
			}
		}
		if n == 0 {
			first = e.Offset
		}
		buf = event.Append(buf, e)
		n++
		last = e.Offset
		bytes += int64(len(e.Data)) + int64(len(e.Text))
		if e.Kind == event.KindPGQuery || e.Kind == event.KindPGExecute {
			statements++
		}
	}
	if err := flush(); err != nil {
		return broker.Session{}, err
	}
	raw, hash, err := manifest.Sign(m, s.Signer)
	if err != nil {
		return broker.Session{}, err
	}
	if _, err := s.Store.Put(ctx, prefix+"manifest.json", raw, store.PutOptions{}); err != nil {
		return broker.Session{}, err
	}
	if _, err := s.Audit.Append(ctx, audit.Entry{Actor: "broker", Action: "session.recorded", Target: h.Target,
		Outcome: broker.OutcomeSuccess, Details: map[string]any{"session_id": h.SessionID, "user": h.User,
			"state": m.State, "manifest_key": prefix + "manifest.json", "manifest_sha256": hash,
			"chunks": len(m.Chunks), "events": m.Events}}); err != nil {
		return broker.Session{}, err
	}
	sess := broker.Session{ID: h.SessionID, GrantID: h.GrantID, User: h.User, Target: h.Target, Role: h.Role,
		Protocol: h.Protocol, ClientAddr: h.ClientAddr, StartedAt: h.StartedAt, EndedAt: m.EndedAt,
		State: broker.SessionClosed, Bytes: bytes, Statements: statements, Index: searchText, ManifestHash: hash}
	err = s.State.Update(ctx, func(tx broker.Tx) error { return tx.PutSession(sess) })
	return sess, err
}

package evidence

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/recorder"
)

// Format names the layout of evidence.json; docs/evidence.schema.json
// describes it.
const Format = "custos-evidence/1"

// verifier verifies a stored recording; *recorder.Recorder implements it.
type verifier interface {
	Verify(ctx context.Context, sessionID string) (*recorder.VerifyReport, error)
}

// chainVerifier checks the whole audit log with its signed checkpoints;
// *audit.Verifier implements it.
type chainVerifier interface {
	Verify(ctx context.Context) (audit.Report, error)
}

// DefaultSample is how many sessions of a period bundle are verified live
// against the recording store when PeriodInput.Sample is zero.
const DefaultSample = 25

// PeriodInput is what a target-and-period bundle is made from.
type PeriodInput struct {
	// Target and [From, To) select what the bundle covers. Required.
	Target   string
	From, To time.Time
	// Store holds requests, grants, sessions and the audit log. Required.
	Store broker.Store
	// Recordings verifies a sample of the recordings live. Default: nil,
	// no live verification (each session carries its last recorded
	// verdict only).
	Recordings verifier
	// Chain verifies the whole audit log with its signed checkpoints.
	// Default: nil, the chain in Store alone (audit.Verify).
	Chain chainVerifier
	// Sample is how many sessions are verified live, picked at random,
	// failed and never-verified sessions first. Default (0): DefaultSample;
	// negative: none.
	Sample int
	// Workers verify the sample in parallel. Default: 4.
	Workers int
	// By names who asked for the bundle.
	By string
	// Now stamps the bundle.
	Now time.Time
}

// Bundle is evidence.json: everything known about one target in a period.
type Bundle struct {
	Format      string         `json:"format"`
	GeneratedAt time.Time      `json:"generated_at"`
	GeneratedBy string         `json:"generated_by"`
	Target      string         `json:"target"`
	From        time.Time      `json:"from"`
	To          time.Time      `json:"to"`
	Summary     Summary        `json:"summary"`
	Grants      []broker.Grant `json:"grants"`
	Requests    []Request      `json:"requests"`
	Approvals   []Approval     `json:"approvals"`
	Sessions    []Session      `json:"sessions"`
	BreakGlass  []Event        `json:"breakglass"`
	// Reviews holds access reviews of the target in the period; empty
	// until access reviews are recorded.
	Reviews []json.RawMessage `json:"reviews"`
	Audit   AuditSegment      `json:"audit"`
}

// Summary counts what the bundle holds and how it verified.
type Summary struct {
	Grants          int  `json:"grants"`
	Requests        int  `json:"requests"`
	Sessions        int  `json:"sessions"`
	BreakGlass      int  `json:"breakglass_events"`
	VerifiedLive    int  `json:"verified_live"`
	LiveFailed      int  `json:"live_failed"`
	RecordedIntact  int  `json:"recorded_intact"`
	RecordedFailed  int  `json:"recorded_failed"`
	NotVerified     int  `json:"not_verified"`
	AuditRecords    int  `json:"audit_records"`
	ChainSegmentOK  bool `json:"chain_segment_ok"`
	AuditLogOK      bool `json:"audit_log_ok"`
	SessionsFailing int  `json:"sessions_failing"`
}

// Request is an access request with its decisions.
type Request struct {
	broker.Request
	Approvals []Approval `json:"approvals"`
}

// Approval is one approver's decision with, when the audit record of the
// approval carries them, its electronic signature fields.
type Approval struct {
	RequestID string    `json:"request_id"`
	GrantID   string    `json:"grant_id,omitempty"`
	By        string    `json:"by"`
	At        time.Time `json:"at"`
	Via       string    `json:"via,omitempty"`
	Comment   string    `json:"comment,omitempty"`
	// Signature holds the signature fields of the approval's audit
	// record (meaning, re-authentication, ...), when present.
	Signature map[string]any `json:"signature,omitempty"`
	AuditSeq  int64          `json:"audit_seq,omitempty"`
}

// Session is a recorded session with what it ran and its verification.
type Session struct {
	broker.Session
	// Commands are the session index's entries: SSH commands, SQL
	// statements (normalised unless policy says otherwise) and paths.
	Commands []string `json:"commands"`
	Verify   Verdict  `json:"verify"`
}

// Verdict is how a session's recording verified. Source is "live" (this
// bundle verified it against the recording store), "recorded" (the last
// verification in the audit log), "sealed" (the recorder's seal record
// only, never verified since) or "none".
type Verdict struct {
	Source  string    `json:"source"`
	Intact  *bool     `json:"intact,omitempty"`
	Verdict string    `json:"verdict,omitempty"`
	At      time.Time `json:"at,omitzero"`
	// Problems are the live verification's failed checks.
	Problems []string `json:"problems,omitempty"`
}

// Event is an audit record summarised for a section of the bundle.
type Event struct {
	Seq     int64           `json:"seq"`
	Time    time.Time       `json:"time"`
	Actor   string          `json:"actor"`
	Action  string          `json:"action"`
	Target  string          `json:"target,omitempty"`
	Outcome string          `json:"outcome"`
	Reason  string          `json:"reason,omitempty"`
	Details json.RawMessage `json:"details,omitempty"`
}

// AuditSegment is the audit chain for the period: the records that
// concern the target in full, every record's link (seq, prev_hash, hash)
// so the chain can be re-walked offline, the segment's own check and the
// whole log's verification with its signed checkpoints.
type AuditSegment struct {
	FirstSeq int64                `json:"first_seq"`
	LastSeq  int64                `json:"last_seq"`
	Anchor   string               `json:"anchor"`
	Records  []broker.AuditRecord `json:"records"`
	Links    []Link               `json:"links"`
	Segment  SegmentCheck         `json:"segment"`
	Log      audit.Report         `json:"log"`
}

// Link is one record's place in the chain.
type Link struct {
	Seq      int64  `json:"seq"`
	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
}

// SegmentCheck is the check of the period's part of the chain: every
// record's hash recomputed, every link followed, and the first record
// linked to the one before the period (the anchor).
type SegmentCheck struct {
	OK       bool   `json:"ok"`
	Records  int    `json:"records"`
	FirstBad int64  `json:"first_bad,omitempty"`
	Problem  string `json:"problem,omitempty"`
}

// Collect gathers a target's evidence for a period.
func Collect(ctx context.Context, in PeriodInput) (*Bundle, error) {
	if in.Target == "" || in.Store == nil || !in.From.Before(in.To) {
		return nil, errors.New("evidence: a target, a store and a period (from before to) are required")
	}
	if in.Now.IsZero() {
		in.Now = time.Now()
	}
	b := &Bundle{Format: Format, GeneratedAt: in.Now.UTC(), GeneratedBy: in.By, Target: in.Target,
		From: in.From.UTC(), To: in.To.UTC(), Grants: []broker.Grant{}, Requests: []Request{}, Approvals: []Approval{},
		Sessions: []Session{}, BreakGlass: []Event{}, Reviews: []json.RawMessage{}}
	var sessions []broker.Session
	err := in.Store.View(ctx, func(tx broker.Tx) error {
		gs, err := tx.ListGrants(broker.GrantFilter{Target: in.Target})
		if err != nil {
			return err
		}
		for _, g := range gs {
			if g.StartsAt.Before(in.To) && g.EffectiveEnd().After(in.From) {
				b.Grants = append(b.Grants, g)
			}
		}
		sessions, err = tx.ListSessions(broker.SessionFilter{Target: in.Target, Since: in.From, Until: in.To})
		if err != nil {
			return err
		}
		rs, err := tx.ListRequests(broker.RequestFilter{Target: in.Target})
		if err != nil {
			return err
		}
		granted := map[string]bool{}
		for _, g := range b.Grants {
			granted[g.RequestID] = true
		}
		for _, r := range rs {
			inPeriod := !r.CreatedAt.Before(in.From) && r.CreatedAt.Before(in.To)
			if inPeriod || granted[r.ID] {
				b.Requests = append(b.Requests, Request{Request: r})
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("evidence: read store: %w", err)
	}
	sortGrants(b.Grants)
	sort.Slice(sessions, func(i, j int) bool { return sessions[i].StartedAt.Before(sessions[j].StartedAt) })
	sort.Slice(b.Requests, func(i, j int) bool { return b.Requests[i].CreatedAt.Before(b.Requests[j].CreatedAt) })

	if err := collectAudit(ctx, in, b, sessions); err != nil {
		return nil, err
	}
	verifySample(ctx, in, b)
	b.summarise()
	return b, nil
}

func sortGrants(gs []broker.Grant) {
	sort.Slice(gs, func(i, j int) bool { return gs[i].StartsAt.Before(gs[j].StartsAt) })
}

// Commands splits a session's index text into its entries.
func Commands(index string) []string {
	out := []string{}
	for _, l := range strings.Split(index, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// verifySample verifies up to in.Sample sessions live, in parallel:
// sessions whose last verdict failed or that were never verified first,
// then a random pick of the rest, so a reader cannot predict which
// recordings a bundle re-checks.
func verifySample(ctx context.Context, in PeriodInput, b *Bundle) {
	n := in.Sample
	if n == 0 {
		n = DefaultSample
	}
	if in.Recordings == nil || n < 0 {
		return
	}
	var first, rest []int
	for i, s := range b.Sessions {
		if s.State == broker.SessionLive || s.ManifestHash == "" {
			continue
		}
		if s.Verify.Intact == nil || !*s.Verify.Intact {
			first = append(first, i)
		} else {
			rest = append(rest, i)
		}
	}
	shuffle(first)
	shuffle(rest)
	pick := append(first, rest...)
	if len(pick) > n {
		pick = pick[:n]
	}
	workers := in.Workers
	if workers <= 0 {
		workers = 4
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, max(len(pick), 1)) {
		wg.Go(func() {
			for i := range jobs {
				s := &b.Sessions[i]
				rep, err := in.Recordings.Verify(ctx, s.ID)
				if err != nil {
					// The store could not be read: keep the recorded
					// verdict, and say so.
					s.Verify.Problems = []string{"live verification could not read the recording store"}
					continue
				}
				ok := rep.Intact
				v := Verdict{Source: "live", Intact: &ok, Verdict: rep.Verdict, At: in.Now.UTC()}
				for _, p := range rep.Problems {
					v.Problems = append(v.Problems, fmt.Sprint(p))
				}
				s.Verify = v
			}
		})
	}
	for _, i := range pick {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
}

func shuffle(xs []int) {
	for i := len(xs) - 1; i > 0; i-- {
		j, err := rand.Int(rand.Reader, big.NewInt(int64(i+1)))
		if err != nil {
			return
		}
		xs[i], xs[j.Int64()] = xs[j.Int64()], xs[i]
	}
}

func (b *Bundle) summarise() {
	s := &b.Summary
	s.Grants, s.Requests, s.Sessions, s.BreakGlass = len(b.Grants), len(b.Requests), len(b.Sessions), len(b.BreakGlass)
	for _, x := range b.Sessions {
		v := x.Verify
		switch {
		case v.Source == "live" && *v.Intact:
			s.VerifiedLive++
		case v.Source == "live":
			s.VerifiedLive++
			s.LiveFailed++
			s.SessionsFailing++
		case v.Source == "recorded" && v.Intact != nil && *v.Intact:
			s.RecordedIntact++
		case v.Source == "recorded":
			s.RecordedFailed++
			s.SessionsFailing++
		default:
			s.NotVerified++
		}
	}
	s.AuditRecords = len(b.Audit.Records)
	s.ChainSegmentOK = b.Audit.Segment.OK
	s.AuditLogOK = b.Audit.Log.OK
}

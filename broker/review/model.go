// Package review owns periodic access reviews: a snapshot of who may
// request and approve each target and role, who holds each break-glass
// account's custody and who holds standing API tokens; the diff of that
// snapshot against the last attested review; reviewers' per-line marks;
// and the attestation, signed with re-authentication and a meaning. Each
// review's snapshot hash includes the previous attested review's hash,
// so the reviews form a chain of their own besides the audit log.
package review

import (
	"time"
)

// Entry kinds.
const (
	KindRequester = "requester"
	KindApprover  = "approver"
	KindCustodian = "custodian"
	KindToken     = "token"
)

// Entry is one fact of a snapshot: User may act as Kind on Object (a
// target/role, a break-glass account, or, for a token, the token's id).
type Entry struct {
	Kind   string `json:"kind"`
	User   string `json:"user"`
	Object string `json:"object"`
	// Via says how the user got there: the groups naming them, "direct"
	// when the policy names the user, "anyone" when the role names no
	// requesters at all.
	Via []string `json:"via,omitempty"`
	// CreatedAt and ExpiresAt are a token's; AgeDays its age in whole
	// days when the snapshot was taken (not compared by the diff).
	CreatedAt time.Time `json:"created_at,omitzero"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	AgeDays   int       `json:"age_days,omitempty"`
}

// key identifies an entry across snapshots.
func (e Entry) key() string { return e.Kind + "\x00" + e.User + "\x00" + e.Object }

// Line ops.
const (
	OpAdded   = "+"
	OpRemoved = "-"
	OpChanged = "~"
)

// Line is one line of a review's diff against the last attested review.
type Line struct {
	// N numbers the line from 1, for marking it.
	N     int    `json:"n"`
	Op    string `json:"op"`
	Entry Entry  `json:"entry"`
	// Was is the entry as the last attested review had it, for a
	// changed line.
	Was *Entry `json:"was,omitempty"`
	// Text is the line as people read it, e.g.
	// "+ approver carol on demo-pg/readwrite".
	Text  string `json:"text"`
	Marks []Mark `json:"marks,omitempty"`
}

// Verdicts of a mark.
const (
	VerdictAttest = "attest"
	VerdictFlag   = "flag"
)

// Mark is one reviewer's verdict on a line.
type Mark struct {
	By      string    `json:"by"`
	Verdict string    `json:"verdict"`
	Comment string    `json:"comment,omitempty"`
	At      time.Time `json:"at"`
}

// Signature is an electronic signature: who (printed name), when (UTC),
// what it means, and how the signer proved who they are.
type Signature struct {
	PrintedName string    `json:"printed_name"`
	Time        time.Time `json:"time"`
	Meaning     string    `json:"meaning"`
	Method      string    `json:"method"`
	// Signer is the login; RecordHash the hash of the record signed
	// (esign.Record.Hash). Reviews attested before the signing ceremony
	// was shared lack both.
	Signer     string `json:"signer,omitempty"`
	RecordHash string `json:"record_hash,omitempty"`
}

// SignatureInput is what a signer presents again to sign: password and
// TOTP code, or a passkey assertion (action "signature", object
// "review:ID").
type SignatureInput struct {
	Password string
	TOTP     string
	Passkey  []byte
	// Source is the client address, for rate limiting and audit.
	Source string
}

// Review states.
const (
	StateOpen     = "open"
	StateAttested = "attested"
)

// Attestation is the signed close of a review.
type Attestation struct {
	By        string    `json:"by"`
	Signature Signature `json:"signature"`
	// Flagged is how many lines carried a flag when it was signed.
	Flagged int `json:"flagged"`
	// ResultHash covers the snapshot hash, every line with its marks
	// and the signature.
	ResultHash string `json:"result_hash"`
}

// Review is one access review.
type Review struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	StartedBy string    `json:"started_by"`
	StartedAt time.Time `json:"started_at"`
	State     string    `json:"state"`
	// Base is the last attested review the diff is against; empty for
	// the first review, whose lines are all added.
	Base string `json:"base,omitempty"`
	// PrevHash is Base's snapshot hash; SnapshotHash covers PrevHash and
	// Snapshot.
	PrevHash     string       `json:"prev_hash,omitempty"`
	SnapshotHash string       `json:"snapshot_hash"`
	Snapshot     []Entry      `json:"snapshot"`
	Lines        []Line       `json:"lines"`
	Attestation  *Attestation `json:"attestation,omitempty"`
	AttestedAt   time.Time    `json:"attested_at,omitzero"`
}

// Summary is a review as lists show it.
type Summary struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	State        string    `json:"state"`
	StartedBy    string    `json:"started_by"`
	StartedAt    time.Time `json:"started_at"`
	AttestedAt   time.Time `json:"attested_at,omitzero"`
	SnapshotHash string    `json:"snapshot_hash"`
	Lines        int       `json:"lines"`
	Flagged      int       `json:"flagged"`
}

// Summary returns r's summary.
func (r *Review) Summary() Summary {
	return Summary{ID: r.ID, Name: r.Name, State: r.State, StartedBy: r.StartedBy, StartedAt: r.StartedAt,
		AttestedAt: r.AttestedAt, SnapshotHash: r.SnapshotHash, Lines: len(r.Lines), Flagged: r.flagged()}
}

// flagged counts the lines some reviewer flagged.
func (r *Review) flagged() int {
	n := 0
	for _, l := range r.Lines {
		for _, m := range l.Marks {
			if m.Verdict == VerdictFlag {
				n++
				break
			}
		}
	}
	return n
}

// Status is where reviews stand: the open review, the last attested one,
// and whether one is overdue.
type Status struct {
	Current      *Summary  `json:"current,omitempty"`
	LastAttested *Summary  `json:"last_attested,omitempty"`
	Every        string    `json:"every"`
	DueAt        time.Time `json:"due_at,omitzero"`
	Overdue      bool      `json:"overdue"`
	// Reviewers are the configured reviewers (users and groups) and
	// Meanings the meanings an attestation may carry.
	Reviewers []string `json:"reviewers"`
	Meanings  []string `json:"meanings"`
}

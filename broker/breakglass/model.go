package breakglass

import (
	"time"

	"github.com/custos-pam/custos/broker"
)

// State is where a break-glass account stands.
type State string

// Account states.
const (
	StateSealed          State = "sealed"
	StateUnsealRequested State = "unseal_requested"
	StateOpen            State = "open"
	StateRotating        State = "rotating"
	// StateCompromised means rotation failed: the credential may be known
	// to someone and stays flagged until a rotation succeeds.
	StateCompromised State = "compromised-until-rotated"
)

// Confirmation is one custodian's agreement to an unseal.
type Confirmation struct {
	Custodian string    `json:"custodian"`
	At        time.Time `json:"at"`
	// Via is the channel: cli, web or slack.
	Via string `json:"via"`
	// SecondFactor says what was checked again: "password+totp" or
	// "password" (accounts with require_totp: false), or "passkey".
	SecondFactor string `json:"second_factor"`
	// Signature is the confirmation's electronic signature, when
	// signatures.unseal is "required".
	Signature *broker.Signature `json:"signature,omitempty"`
}

// Unseal outcomes.
const (
	UnsealPending   = "pending"
	UnsealOpened    = "opened"
	UnsealExpired   = "expired"
	UnsealCancelled = "cancelled"
	UnsealClosed    = "closed"
)

// Unseal is one request to open an account, from the ask to the close.
type Unseal struct {
	ID          string `json:"id"`
	Account     string `json:"account"`
	RequestedBy string `json:"requested_by"`
	Reason      string `json:"reason"`
	Incident    string `json:"incident"`
	// Drill is the drill this unseal belongs to; empty for a real unseal.
	Drill string `json:"drill,omitempty"`
	// Required is how many distinct custodians must confirm.
	Required        int            `json:"required"`
	SingleCustodian bool           `json:"single_custodian,omitempty"`
	Confirmations   []Confirmation `json:"confirmations"`
	RequestedAt     time.Time      `json:"requested_at"`
	// ExpiresAt is when a request still short of confirmations lapses.
	ExpiresAt time.Time `json:"expires_at"`
	OpenedAt  time.Time `json:"opened_at,omitzero"`
	// OpenUntil is when an open account is closed and rotated.
	OpenUntil   time.Time `json:"open_until,omitzero"`
	ClosedAt    time.Time `json:"closed_at,omitzero"`
	ClosedBy    string    `json:"closed_by,omitempty"`
	CloseReason string    `json:"close_reason,omitempty"`
	// GrantID is the grant the open account gave RequestedBy (none for a
	// drill: the broker itself logs in).
	GrantID string `json:"grant_id,omitempty"`
	Outcome string `json:"outcome"`
}

// Confirmed reports whether user confirmed the unseal.
func (u *Unseal) Confirmed(user string) bool {
	for _, c := range u.Confirmations {
		if c.Custodian == user {
			return true
		}
	}
	return false
}

// Custodians are the custodians who confirmed, in order.
func (u *Unseal) Custodians() []string {
	out := make([]string, len(u.Confirmations))
	for i, c := range u.Confirmations {
		out[i] = c.Custodian
	}
	return out
}

// OutOfBand records a broker outage longer than the account's offline
// window, during which custodians could read the credential from Vault
// directly.
type OutOfBand struct {
	DownFrom  time.Time `json:"down_from"`
	DownUntil time.Time `json:"down_until"`
	// Incident and Details are what the custodians reported afterwards.
	Incident   string    `json:"incident,omitempty"`
	Details    string    `json:"details,omitempty"`
	ReportedBy string    `json:"reported_by,omitempty"`
	ReportedAt time.Time `json:"reported_at,omitzero"`
}

// Account is the durable state of one break-glass account.
type Account struct {
	Name  string `json:"name"`
	State State  `json:"state"`
	// Unseal is the current unseal while requested, open or rotating;
	// LastUnseal the one before.
	Unseal     *Unseal `json:"unseal,omitempty"`
	LastUnseal *Unseal `json:"last_unseal,omitempty"`
	// RotateReason is why the rotation under way (or failing) is due.
	RotateReason string `json:"rotate_reason,omitempty"`
	// RotatingBy and RotatingSince claim a rotation for one broker
	// process, so replicas do not rotate twice; a stale claim is taken over.
	RotatingBy    string    `json:"rotating_by,omitempty"`
	RotatingSince time.Time `json:"rotating_since,omitzero"`
	// Revealed lists who saw the secret since the last rotation.
	Revealed []string `json:"revealed,omitempty"`

	LastRotation      time.Time `json:"last_rotation,omitzero"`
	LastRotationError string    `json:"last_rotation_error,omitempty"`
	// LastVerification is what the last rotation proved.
	LastVerification *Verification `json:"last_verification,omitempty"`
	CompromisedSince time.Time     `json:"compromised_since,omitzero"`
	LastAlert        time.Time     `json:"last_alert,omitzero"`

	OutOfBand *OutOfBand `json:"out_of_band,omitempty"`

	// FirstSeen is when the broker first knew the account; the first
	// drill is due after it.
	FirstSeen   time.Time `json:"first_seen"`
	LastDrill   string    `json:"last_drill,omitempty"`
	LastDrillOK time.Time `json:"last_drill_ok,omitzero"`
	// RemindedFor and OverdueFor are the due times a reminder and an
	// overdue notice were last sent for; LastOverdueNotice when.
	RemindedFor       time.Time `json:"reminded_for,omitzero"`
	OverdueFor        time.Time `json:"overdue_for,omitzero"`
	LastOverdueNotice time.Time `json:"last_overdue_notice,omitzero"`
}

// Verification is the evidence of one rotation: the credential changed,
// the old one is refused by the target and the new one is accepted.
type Verification struct {
	At time.Time `json:"at"`
	// Rotated says Vault issued a new credential; NotApplicable explains
	// why an account without a standing secret (ssh_ca) has none.
	Rotated       bool   `json:"rotated"`
	NotApplicable string `json:"not_applicable,omitempty"`
	OldRejected   bool   `json:"old_rejected"`
	NewAccepted   bool   `json:"new_accepted"`
	// Terminated counts leftover sessions of the account ended after
	// rotation (a password change does not end them).
	Terminated int `json:"terminated"`
	// Username is the principal; never a secret.
	Username string `json:"username,omitempty"`
	// RotatedAt is when Vault's new credential was read back, VerifiedAt
	// when the checks against the target ended.
	RotatedAt  time.Time `json:"rotated_at,omitzero"`
	VerifiedAt time.Time `json:"verified_at,omitzero"`
}

// Drill outcomes.
const (
	DrillRunning = "running"
	DrillPassed  = "passed"
	DrillFailed  = "failed"
)

// Step outcomes.
const (
	StepOK      = "ok"
	StepFailed  = "failed"
	StepSkipped = "skipped"
)

// Step is one timed step of a drill.
type Step struct {
	Name      string    `json:"name"`
	StartedAt time.Time `json:"started_at"`
	EndedAt   time.Time `json:"ended_at"`
	Outcome   string    `json:"outcome"`
	Detail    string    `json:"detail,omitempty"`
}

// Duration is how long the step took.
func (s Step) Duration() time.Duration { return s.EndedAt.Sub(s.StartedAt) }

// Drill is the evidence of one drill of one account.
type Drill struct {
	ID      string `json:"id"`
	Account string `json:"account"`
	Target  string `json:"target"`
	// Quarter is the calendar quarter (UTC) the drill started in, e.g.
	// "2026Q4".
	Quarter   string `json:"quarter"`
	StartedBy string `json:"started_by"`
	UnsealID  string `json:"unseal_id"`
	// Participants are the custodians who confirmed the unseal.
	Participants []string  `json:"participants"`
	Probe        string    `json:"probe"`
	StartedAt    time.Time `json:"started_at"`
	FinishedAt   time.Time `json:"finished_at,omitzero"`
	Steps        []Step    `json:"steps"`
	Outcome      string    `json:"outcome"`
	// Reason says why a failed drill failed.
	Reason string `json:"reason,omitempty"`
	// TimeToAccess is from the unseal request to the probe's successful
	// login.
	TimeToAccess time.Duration `json:"time_to_access_ns,omitempty"`
	// RecordingID is the recorded session of the probe, when the broker
	// records.
	RecordingID string `json:"recording_id,omitempty"`
}

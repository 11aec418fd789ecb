// Package esign owns the electronic-signature ceremony (21 CFR Part 11
// §11.50, §11.70, §11.200): at the moment of signing the signer
// re-authenticates (password and TOTP, or a passkey), chooses a meaning
// from the configured list, and gets back a broker.Signature that names
// them (login and printed name), the UTC time, the meaning and the method,
// and carries the hash of the record signed so it cannot be transplanted.
// Callers (request approvals and denials, break-glass confirmations,
// access reviews) store the signature with their record and its audit
// entry.
package esign

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
)

// Methods of re-authentication a signature records.
const (
	MethodPasswordTOTP = "password+totp"
	MethodPasskey      = "passkey"
)

// Refusal codes. They are part of the API: clients match on them.
const (
	// CodeSignatureRequired: the action is a signature and none was given.
	CodeSignatureRequired = "signature_required"
	// CodeMeaningNotAllowed: the meaning is not in the configured list.
	CodeMeaningNotAllowed = "meaning_not_allowed"
	// CodeSignatureMismatch: the signature was made over another record.
	CodeSignatureMismatch = "signature_mismatch"
	// CodePasskeyUnavailable: a passkey was given but passkey signing is
	// not available on this broker.
	CodePasskeyUnavailable = "passkey_unavailable"
)

// Input is what a signer presents with the action. Password and TOTP are
// never logged or stored.
type Input struct {
	Meaning  string
	Password string
	TOTP     string
	// Passkey is a WebAuthn assertion over the challenge bound to the
	// action and object; when set, Password and TOTP are not used.
	Passkey []byte
	// Source is the client address, for the sign-in limiter.
	Source string
}

// Field is one named value of a signed record.
type Field struct {
	Name, Value string
}

// Record is what is signed: an action on an object, and the fields that
// make the record what it is (for a request: target, role, duration,
// reason). Its hash is what the signature is linked to.
type Record struct {
	Action   string
	ObjectID string
	Fields   []Field
	// Challenge is the object a passkey's challenge must be bound to
	// (with Action), for records whose ID the signer cannot know before
	// signing (the unseal an ask creates). Default: ObjectID. It is not
	// part of the hash.
	Challenge string
}

// ChallengeObject is what a passkey assertion signing r must have been
// begun for, together with r.Action: r.Challenge, or r.ObjectID.
func (r Record) ChallengeObject() string {
	if r.Challenge != "" {
		return r.Challenge
	}
	return r.ObjectID
}

// Hash returns "sha256:" and the hex SHA-256 of the record's canonical
// JSON form: {"action":…,"object_id":…,"fields":[[name,value],…]} with the
// fields in the order given.
func (r Record) Hash() string {
	fs := make([][2]string, len(r.Fields))
	for i, f := range r.Fields {
		fs[i] = [2]string{f.Name, f.Value}
	}
	b, _ := json.Marshal(struct {
		Action   string      `json:"action"`
		ObjectID string      `json:"object_id"`
		Fields   [][2]string `json:"fields"`
	}{r.Action, r.ObjectID, fs})
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// RequestRecord is the record an approval or denial of req signs: its ID,
// target, role, duration and reason (and ticket).
func RequestRecord(action string, req broker.Request) Record {
	return Record{Action: action, ObjectID: req.ID, Fields: []Field{
		{"user", req.User}, {"target", req.Target}, {"role", req.Role},
		{"duration", req.Duration.String()}, {"reason", req.Reason}, {"ticket", req.Ticket},
	}}
}

// reauthenticator checks a password and TOTP code at signing time;
// *identity.Service implements it.
type reauthenticator interface {
	Reauthenticate(ctx context.Context, user, password, totp, source string) (string, error)
}

// passkeyVerifier checks a WebAuthn assertion with user verification
// whose challenge was bound to (user, action, objectID), single-use;
// *identity.StepUp implements it (step-up action "signature", object
// "<action>:<objectID>").
type passkeyVerifier interface {
	VerifySignature(ctx context.Context, user, action, objectID string, assertion []byte) error
}

// names gives a user's printed name; *identity.Directory implements it.
type names interface {
	PrintedName(user string) string
}

// Options configure a Signer.
type Options struct {
	// Config is read on each signature, so a reload changes the meanings.
	Config *config.Live
	// Reauth checks password and TOTP. Required.
	Reauth reauthenticator
	// Passkeys checks passkey assertions. Default: nil, passkey signing is
	// unavailable.
	Passkeys passkeyVerifier
	// Names gives printed names. Required.
	Names names
	// Now defaults to time.Now.
	Now func() time.Time
}

// Signer runs the signing ceremony.
type Signer struct {
	o Options
}

// New returns a Signer.
func New(o Options) *Signer {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Signer{o: o}
}

// SetPasskeys makes passkey signing available; call before serving.
func (s *Signer) SetPasskeys(p passkeyVerifier) { s.o.Passkeys = p }

// Meanings returns the meanings a signer of action may choose.
func (s *Signer) Meanings(action string) []string {
	return s.o.Config.Load().Signatures.MeaningsFor(action)
}

// Sign runs the ceremony for user over rec: the meaning must be one of
// the configured ones for rec.Action (checked first, so a refused meaning
// uses up no code), then the signer re-authenticates. A missing input is
// refused with CodeSignatureRequired.
func (s *Signer) Sign(ctx context.Context, user string, rec Record, in *Input) (broker.Signature, error) {
	if in == nil {
		return broker.Signature{}, broker.Refuse(broker.KindForbidden, CodeSignatureRequired,
			"%s of %s is an electronic signature: re-authenticate and choose a meaning (web UI, or custos with --meaning)", rec.Action, rec.ObjectID)
	}
	meaning := strings.TrimSpace(in.Meaning)
	allowed := s.Meanings(rec.Action)
	if meaning == "" && len(allowed) == 1 {
		meaning = allowed[0]
	}
	if !slices.Contains(allowed, meaning) {
		return broker.Signature{}, broker.Refuse(broker.KindInvalid, CodeMeaningNotAllowed,
			"meaning %q is not one of the configured meanings for %s: %s", meaning, rec.Action, quoted(allowed))
	}
	method := MethodPasskey
	switch {
	case len(in.Passkey) > 0 && s.o.Passkeys == nil:
		return broker.Signature{}, broker.Refuse(broker.KindInvalid, CodePasskeyUnavailable, "passkey signing is not available on this broker: sign with password and TOTP")
	case len(in.Passkey) > 0:
		if err := s.o.Passkeys.VerifySignature(ctx, user, rec.Action, rec.ChallengeObject(), in.Passkey); err != nil {
			return broker.Signature{}, fmt.Errorf("esign: passkey: %w", err)
		}
	default:
		m, err := s.o.Reauth.Reauthenticate(ctx, user, in.Password, in.TOTP, in.Source)
		if err != nil {
			return broker.Signature{}, fmt.Errorf("esign: %w", err)
		}
		method = m
	}
	return broker.Signature{
		Signer: user, PrintedName: s.o.Names.PrintedName(user), SignedAt: s.o.Now().UTC().Truncate(time.Second),
		Meaning: meaning, Method: method, Action: rec.Action, ObjectID: rec.ObjectID, RecordHash: rec.Hash(),
	}, nil
}

// Check refuses a signature made over anything but rec (another record,
// or the same one since changed) with CodeSignatureMismatch.
func Check(sig broker.Signature, rec Record) error {
	if sig.Action != rec.Action || sig.ObjectID != rec.ObjectID || sig.RecordHash != rec.Hash() {
		return broker.Refuse(broker.KindConflict, CodeSignatureMismatch, "the signature is over another record than %s %s", rec.Action, rec.ObjectID)
	}
	return nil
}

// Details is the signature as an audit record's details show it.
func Details(sig broker.Signature) map[string]any {
	return map[string]any{"signer": sig.Signer, "printed_name": sig.PrintedName,
		"signed_at": sig.SignedAt.UTC().Format(time.RFC3339), "meaning": sig.Meaning, "method": sig.Method,
		"action": sig.Action, "object_id": sig.ObjectID, "record_hash": sig.RecordHash}
}

func quoted(list []string) string {
	q := make([]string, len(list))
	for i, m := range list {
		q[i] = fmt.Sprintf("%q", m)
	}
	return strings.Join(q, ", ")
}

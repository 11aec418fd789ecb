package identity

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// Step-up actions: what a step-up challenge is bound to, together with
// the user and the object (a request, session or passkey ID).
const (
	ActionApprove           = "request.approve"
	ActionDeny              = "request.deny"
	ActionBreakGlassConfirm = "breakglass.confirm"
	ActionBreakGlassUnseal  = "breakglass.unseal"
	ActionTerminateSession  = "session.terminate"
	ActionExportEvidence    = "session.evidence"
	ActionPasskeyRemove     = "passkey.remove"
	ActionTOTPEnrol         = "totp.enrol"
	ActionPasskeyAdd        = "passkey.add"
	ActionPolicyChange      = "policy.change"
	ActionSign              = "signature"
)

// Step-up proof methods.
const (
	StepUpPasskey = "passkey"
	StepUpTOTP    = "totp"
)

// stepUpKey is the state-store document holding a user's open step-up
// challenges, keyed by challenge.
func stepUpKey(user string) string { return "identity/stepup/" + user }

type pendingStepUp struct {
	Action  string               `json:"action"`
	Object  string               `json:"object"`
	Expires time.Time            `json:"expires"`
	Session webauthn.SessionData `json:"session"`
}

// StepUpProof is a verified fresh re-authentication for one action on
// one object.
type StepUpProof struct {
	// Method is StepUpPasskey or StepUpTOTP.
	Method   string
	User     string
	Action   string
	ObjectID string
	// Credential is the passkey's ID (base64url) for StepUpPasskey.
	Credential string
	Time       time.Time
}

// totpKeys finds a user's TOTP secret; *Directory implements it.
type totpKeys interface {
	totpKeyOf(user string) []byte
}

// StepUp verifies fresh re-authentications bound to an action: a passkey
// assertion with user verification whose challenge the broker issued for
// exactly (user, action, object) and which is consumed on first use, or,
// where policy allows the weaker factor, a TOTP code (which the shared
// step guard makes single-use across sign-ins and step-ups).
type StepUp struct {
	keys  *Passkeys
	dir   totpKeys
	guard StepGuard
	store broker.Store
	audit auditLog
	now   func() time.Time
	// totpTries bounds wrong TOTP step-up codes per user (5 per 15
	// minutes, shared by replicas), so a stolen session cannot guess.
	totpTries *SharedLimiter
}

// NewStepUp returns the step-up verifier over keys (nil: no passkeys,
// TOTP step-ups only); TOTP codes are checked against dir's secrets with
// guard (nil: a StoreStepGuard over store, shared with sign-ins). now
// defaults to time.Now.
func NewStepUp(keys *Passkeys, dir *Directory, store broker.Store, log *audit.Log, guard StepGuard, now func() time.Time) *StepUp {
	if guard == nil {
		guard = StoreStepGuard{Store: store}
	}
	if now == nil {
		now = time.Now
	}
	return &StepUp{keys: keys, dir: dir, guard: guard, store: store, audit: log, now: now,
		totpTries: NewSharedLimiter(store, "stepup-totp", 0, 0, now)}
}

// Passkeys returns the passkey service.
func (s *StepUp) Passkeys() *Passkeys { return s.keys }

// CodeNoPasskey: the user has no passkey to step up with.
const CodeNoPasskey = "no_passkey"

func stepUpRefused(msg, detail string) *Error {
	return &Error{Kind: broker.KindForbidden, Code: CodeStepUp, Message: msg, Detail: detail}
}

// Begin issues a step-up challenge for user to perform action on
// objectID and returns the options for navigator.credentials.get (a
// CredentialAssertion: {"publicKey": {...}}). The challenge is usable
// once, for that (user, action, object) only, within two minutes.
func (s *StepUp) Begin(ctx context.Context, user, action, objectID string) (json.RawMessage, error) {
	if action == "" || objectID == "" {
		return nil, refusal(CodeBadRequest, "a step-up needs an action and an object ID", "step-up without action or object")
	}
	if s.keys == nil {
		return nil, errNoPasskeys
	}
	var out json.RawMessage
	err := s.store.Update(ctx, func(tx broker.Tx) error {
		doc, err := readPasskeys(tx, user)
		if err != nil {
			return err
		}
		if len(doc.Keys) == 0 {
			return &Error{Kind: broker.KindInvalid, Code: CodeNoPasskey,
				Message: "you have no passkey: register one under Security keys first", Detail: "no passkey"}
		}
		assertion, session, err := s.keys.wa.BeginLogin(waUser{name: user, doc: doc},
			webauthn.WithUserVerification(protocol.VerificationRequired))
		if err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		pending, err := readStepUps(tx, user)
		if err != nil {
			return err
		}
		now := s.now()
		for c, p := range pending {
			if now.After(p.Expires) {
				delete(pending, c)
			}
		}
		if len(pending) >= maxPendingStepUps {
			return refusal(CodeBadRequest, "too many step-ups in progress: finish or wait two minutes", "too many pending step-ups")
		}
		pending[session.Challenge] = pendingStepUp{Action: action, Object: objectID, Expires: now.Add(ceremonyTTL), Session: *session}
		if err := writeStepUps(tx, user, pending); err != nil {
			return err
		}
		out, err = json.Marshal(assertion)
		return err
	})
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return nil, e
		}
		return nil, fmt.Errorf("step-up: begin: %w", err)
	}
	return out, nil
}

func readStepUps(tx broker.Tx, user string) (map[string]pendingStepUp, error) {
	out := map[string]pendingStepUp{}
	b, err := tx.GetState(stepUpKey(user))
	if errors.Is(err, broker.ErrNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("decode step-ups: %w", err)
	}
	return out, nil
}

func writeStepUps(tx broker.Tx, user string, m map[string]pendingStepUp) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return tx.PutState(stepUpKey(user), b)
}

// Verify checks a passkey assertion (the PublicKeyCredential as JSON)
// for user performing action on objectID. The assertion's challenge must
// be one Begin issued for exactly this user, action and object, not yet
// used and not expired; it is consumed by this call whatever the
// outcome, so an assertion is never accepted twice. The signature, RP
// ID, origin and user verification are then checked against the user's
// registered passkey. Every outcome is audited as auth.stepup.
func (s *StepUp) Verify(ctx context.Context, user, action, objectID string, assertion []byte) (StepUpProof, error) {
	proof, err := s.verify(ctx, user, action, objectID, assertion)
	s.record(ctx, user, action, objectID, StepUpPasskey, proof.Credential, err)
	return proof, err
}

// VerifyPasskey is Verify for callers that need only the verdict (the
// break-glass service's step-up).
func (s *StepUp) VerifyPasskey(ctx context.Context, user, action, objectID string, assertion []byte) error {
	_, err := s.Verify(ctx, user, action, objectID, assertion)
	return err
}

// VerifySignature checks a passkey assertion that re-authenticates user
// for an electronic signature of action (approve, deny, unseal, review)
// on objectID: its challenge must have been begun for ActionSign and the
// object "<action>:<objectID>" (esign.Signer.SetPasskeys).
func (s *StepUp) VerifySignature(ctx context.Context, user, action, objectID string, assertion []byte) error {
	return s.VerifyPasskey(ctx, user, ActionSign, action+":"+objectID, assertion)
}

func (s *StepUp) verify(ctx context.Context, user, action, objectID string, assertion []byte) (StepUpProof, error) {
	if s.keys == nil {
		return StepUpProof{}, errNoPasskeys
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(assertion)
	if err != nil {
		return StepUpProof{}, stepUpRefused("the passkey answer could not be read: confirm again", "parse assertion: "+errText(err))
	}
	challenge := parsed.Response.CollectedClientData.Challenge
	var (
		pending pendingStepUp
		found   bool
		doc     *passkeyDoc
	)
	// Consume the challenge first, in its own transaction: whatever
	// happens next, it cannot be used again.
	err = s.store.Update(ctx, func(tx broker.Tx) error {
		m, err := readStepUps(tx, user)
		if err != nil {
			return err
		}
		pending, found = m[challenge]
		if !found {
			return nil
		}
		delete(m, challenge)
		if doc, err = readPasskeys(tx, user); err != nil {
			return err
		}
		return writeStepUps(tx, user, m)
	})
	if err != nil {
		return StepUpProof{}, fmt.Errorf("step-up: verify: %w", err)
	}
	switch {
	case !found:
		return StepUpProof{}, stepUpRefused("this confirmation was already used or was never issued to you: confirm again",
			"unknown or used challenge")
	case pending.Action != action || pending.Object != objectID:
		return StepUpProof{}, stepUpRefused("this confirmation was issued for another action or object: confirm again",
			fmt.Sprintf("challenge bound to %s %s, presented for %s %s", pending.Action, pending.Object, action, objectID))
	case s.now().After(pending.Expires):
		return StepUpProof{}, stepUpRefused("this confirmation expired (two minutes): confirm again", "challenge expired")
	}
	cred, err := s.keys.wa.ValidateLogin(waUser{name: user, doc: doc}, pending.Session, parsed)
	if err != nil {
		return StepUpProof{}, stepUpRefused("the passkey was not accepted: "+publicReason(err), "validate assertion: "+errText(err))
	}
	if !cred.Flags.UserVerified || !parsed.Response.AuthenticatorData.Flags.HasUserVerified() {
		return StepUpProof{}, stepUpRefused("the authenticator did not verify you (PIN or biometrics)", "no user verification")
	}
	if cred.Authenticator.CloneWarning {
		return StepUpProof{}, stepUpRefused("this passkey's signature counter went backwards (a cloned key?): remove it and register a new one",
			"clone warning")
	}
	id := base64.RawURLEncoding.EncodeToString(cred.ID)
	now := s.now().UTC()
	// Remember the counter and the use.
	if err := s.store.Update(ctx, func(tx broker.Tx) error {
		d, err := readPasskeys(tx, user)
		if err != nil {
			return err
		}
		for i := range d.Keys {
			if d.Keys[i].ID == id {
				d.Keys[i].Credential.Authenticator = cred.Authenticator
				d.Keys[i].Credential.Flags = cred.Flags
				d.Keys[i].LastUsed = now
			}
		}
		return writePasskeys(tx, user, d)
	}); err != nil {
		return StepUpProof{}, fmt.Errorf("step-up: verify: %w", err)
	}
	return StepUpProof{Method: StepUpPasskey, User: user, Action: action, ObjectID: objectID, Credential: id, Time: now}, nil
}

// VerifyTOTP checks a TOTP code as the weaker step-up for user
// performing action on objectID. A code is bound to its use only by
// being single-use: the step guard refuses it (and older codes) once it
// served a sign-in or another step-up. Callers whose policy asks for a
// passkey must not accept the proof (policy.StepUpSatisfied). Every
// outcome is audited as auth.stepup.
func (s *StepUp) VerifyTOTP(ctx context.Context, user, action, objectID, code string) (StepUpProof, error) {
	proof, err := s.verifyTOTP(ctx, user, action, objectID, code)
	s.record(ctx, user, action, objectID, StepUpTOTP, "", err)
	return proof, err
}

func (s *StepUp) verifyTOTP(ctx context.Context, user, action, objectID, code string) (StepUpProof, error) {
	key := s.dir.totpKeyOf(user)
	if key == nil {
		var err error
		if key, err = (StoreTOTP{Store: s.store}).KeyOf(ctx, user); err != nil {
			return StepUpProof{}, fmt.Errorf("step-up: totp: %w", err)
		}
	}
	if key == nil {
		return StepUpProof{}, stepUpRefused("you have no TOTP second factor: use a passkey", "no totp secret")
	}
	// Counted as a failure before the check, given back when right.
	res, _, until, allowed, err := s.totpTries.Reserve(ctx, "user:"+user)
	if err != nil {
		return StepUpProof{}, fmt.Errorf("step-up: totp: %w", err)
	}
	if !allowed {
		return StepUpProof{}, &Error{Kind: broker.KindRateLimited, Code: CodeTooManyAttempts,
			Message: "too many wrong codes: try again after " + until.UTC().Format(time.RFC3339) + ", or use a passkey",
			Detail:  "rate limited: too many wrong totp step-up codes"}
	}
	step, ok := checkTOTP(key, code, s.now())
	if !ok {
		return StepUpProof{}, stepUpRefused("wrong TOTP code", "wrong totp code")
	}
	if err := res.Release(ctx); err != nil {
		return StepUpProof{}, fmt.Errorf("step-up: totp: %w", err)
	}
	if err := s.guard.Claim(ctx, user, step); err != nil {
		if errors.Is(err, ErrCodeReused) {
			return StepUpProof{}, stepUpRefused("this TOTP code was already used: wait for the next one", "totp code reused")
		}
		return StepUpProof{}, fmt.Errorf("step-up: totp: %w", err)
	}
	return StepUpProof{Method: StepUpTOTP, User: user, Action: action, ObjectID: objectID, Time: s.now().UTC()}, nil
}

func (s *StepUp) record(ctx context.Context, user, action, objectID, method, cred string, err error) {
	e := audit.Entry{Actor: user, Action: "auth.stepup", Target: objectID, Outcome: "success",
		Details: map[string]any{"for": action, "method": method}}
	if cred != "" {
		e.Details = map[string]any{"for": action, "method": method, "passkey": cred}
	}
	if err != nil {
		e.Outcome = "denied"
		var ie *Error
		if errors.As(err, &ie) {
			e.Reason = ie.Detail
		} else {
			e.Outcome, e.Reason = "error", "store failure"
		}
	}
	_, _ = s.audit.Append(context.WithoutCancel(ctx), e)
}

package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/broker/policy"
)

// stepUpVerifier checks fresh re-authentications bound to an action and
// an object; *identity.StepUp implements it.
type stepUpVerifier interface {
	Begin(ctx context.Context, user, action, objectID string) (json.RawMessage, error)
	Verify(ctx context.Context, user, action, objectID string, assertion []byte) (identity.StepUpProof, error)
	VerifyTOTP(ctx context.Context, user, action, objectID, code string) (identity.StepUpProof, error)
}

// passkeyRegistry registers and removes the caller's passkeys;
// *identity.Passkeys implements it.
type passkeyRegistry interface {
	BeginRegistration(ctx context.Context, user string) (json.RawMessage, error)
	FinishRegistration(ctx context.Context, user, name string, credential []byte) (identity.Passkey, error)
	List(ctx context.Context, user string) ([]identity.Passkey, error)
	Remove(ctx context.Context, user, id string) error
}

// stepUpBody is the step_up field the sensitive actions accept: a passkey
// assertion (the PublicKeyCredential's JSON) for a challenge from
// POST /api/v1/stepup/begin, or a TOTP code.
type stepUpBody struct {
	Assertion json.RawMessage `json:"assertion,omitempty"`
	TOTP      string          `json:"totp,omitempty"`
}

// StepUpHeader carries a step-up (the step_up object as JSON) on GET
// requests that need one: the evidence download.
const StepUpHeader = "X-Custos-Step-Up"

// stepUpActions are the actions POST /api/v1/stepup/begin issues
// challenges for.
var stepUpActions = map[string]bool{
	identity.ActionApprove: true, identity.ActionDeny: true, identity.ActionBreakGlassConfirm: true, identity.ActionBreakGlassUnseal: true,
	identity.ActionTerminateSession: true, identity.ActionExportEvidence: true, identity.ActionPasskeyRemove: true,
	identity.ActionSign: true, identity.ActionTOTPEnrol: true, identity.ActionPasskeyAdd: true,
}

// verifyStepUp checks in for (caller, action, objectID) and returns the
// verified method, or "" when in carries nothing. A refusal is an
// *identity.Error with code step_up_required.
func (a *API) verifyStepUp(ctx context.Context, user, action, objectID string, in *stepUpBody) (string, error) {
	if in == nil || (len(in.Assertion) == 0 && in.TOTP == "") {
		return "", nil
	}
	if a.o.StepUp == nil {
		return "", &broker.Error{Kind: broker.KindUnavailable, Code: "stepup_disabled", Message: "this broker has no step-up verification"}
	}
	var (
		p   identity.StepUpProof
		err error
	)
	if len(in.Assertion) > 0 {
		p, err = a.o.StepUp.Verify(ctx, user, action, objectID, in.Assertion)
	} else {
		p, err = a.o.StepUp.VerifyTOTP(ctx, user, action, objectID, in.TOTP)
	}
	if err != nil {
		return "", err
	}
	return p.Method, nil
}

// requireStepUp answers the refusal and returns false unless in meets
// required for (caller, action, objectID).
func (a *API) requireStepUp(w http.ResponseWriter, r *http.Request, required, action, objectID, what string, in *stepUpBody) bool {
	if required == "" {
		return true
	}
	method, err := a.verifyStepUp(r.Context(), principal(r).User, action, objectID, in)
	if err == nil {
		err = policy.CheckStepUp(required, method, what)
	}
	if err != nil {
		if pe, ok := err.(*policy.Error); ok {
			WriteError(w, http.StatusForbidden, pe.Code, pe.Message)
			return false
		}
		a.Fail(w, err)
		return false
	}
	return true
}

// freshSignIn is how recent a sign-in must be to add a factor (a passkey
// or a TOTP secret) without confirming with an existing one.
const freshSignIn = 10 * time.Minute

// requireFreshOrStepUp guards adding a second factor, so a stolen
// session cannot plant its own: the caller signed in within freshSignIn,
// or confirms with a factor they already have (a step-up bound to
// action and object).
func (a *API) requireFreshOrStepUp(w http.ResponseWriter, r *http.Request, action, objectID, what string, in *stepUpBody) bool {
	if in != nil && (len(in.Assertion) > 0 || in.TOTP != "") {
		return a.requireStepUp(w, r, "any", action, objectID, what, in)
	}
	tok := principal(r).Token
	if !tok.AuthTime.IsZero() && a.o.Now().Sub(tok.AuthTime) <= freshSignIn {
		return true
	}
	WriteError(w, http.StatusForbidden, policy.CodeStepUpRequired,
		fmt.Sprintf("%s needs a sign-in within the last %s, or a confirmation with a passkey or TOTP code you already have: sign in again", what, freshSignIn))
	return false
}

// stepUpBegin: POST /api/v1/stepup/begin {action, object_id} issues a
// passkey challenge bound to the caller, the action and the object.
func (a *API) stepUpBegin(w http.ResponseWriter, r *http.Request) {
	if a.o.StepUp == nil {
		unavailable(w, "stepup_disabled", "this broker has no step-up verification")
		return
	}
	var in struct {
		Action   string `json:"action"`
		ObjectID string `json:"object_id"`
	}
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if !stepUpActions[in.Action] || strings.TrimSpace(in.ObjectID) == "" || len(in.ObjectID) > 128 {
		WriteError(w, http.StatusBadRequest, "bad_request", "a step-up needs a known action and an object_id")
		return
	}
	opts, err := a.o.StepUp.Begin(r.Context(), principal(r).User, in.Action, in.ObjectID)
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"action": in.Action, "object_id": in.ObjectID, "options": opts})
}

func (a *API) passkeysOr503(w http.ResponseWriter) bool {
	if a.o.Passkeys == nil {
		unavailable(w, "passkeys_disabled", "this broker has no passkey support")
		return false
	}
	return true
}

// listPasskeys: GET /api/v1/passkeys, the caller's passkeys.
func (a *API) listPasskeys(w http.ResponseWriter, r *http.Request) {
	if !a.passkeysOr503(w) {
		return
	}
	keys, err := a.o.Passkeys.List(r.Context(), principal(r).User)
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, keys)
}

// beginPasskey: POST /api/v1/passkeys/begin {step_up?}, options for
// navigator.credentials.create: after a fresh sign-in, or with a step-up
// (action passkey.add, object the caller's name).
func (a *API) beginPasskey(w http.ResponseWriter, r *http.Request) {
	if !a.passkeysOr503(w) {
		return
	}
	var in struct {
		StepUp *stepUpBody `json:"step_up"`
	}
	if !decodeOptional(w, r, &in) {
		return
	}
	if !a.requireFreshOrStepUp(w, r, identity.ActionPasskeyAdd, principal(r).User, "registering a passkey", in.StepUp) {
		return
	}
	opts, err := a.o.Passkeys.BeginRegistration(r.Context(), principal(r).User)
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"options": opts})
}

// finishPasskey: POST /api/v1/passkeys {name, credential} stores the new
// passkey.
func (a *API) finishPasskey(w http.ResponseWriter, r *http.Request) {
	if !a.passkeysOr503(w) {
		return
	}
	var in struct {
		Name       string          `json:"name"`
		Credential json.RawMessage `json:"credential"`
	}
	if err := DecodeJSON(r, &in); err != nil || len(in.Credential) == 0 {
		WriteError(w, http.StatusBadRequest, "bad_request", "a passkey registration needs name and credential")
		return
	}
	k, err := a.o.Passkeys.FinishRegistration(r.Context(), principal(r).User, in.Name, in.Credential)
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusCreated, k)
}

// removePasskey: DELETE /api/v1/passkeys/{id} {step_up} removes one of
// the caller's passkeys after a fresh step-up bound to it (a passkey, or
// a TOTP code).
func (a *API) removePasskey(w http.ResponseWriter, r *http.Request) {
	if !a.passkeysOr503(w) {
		return
	}
	var in struct {
		StepUp *stepUpBody `json:"step_up"`
	}
	if !decodeOptional(w, r, &in) {
		return
	}
	id := r.PathValue("id")
	if !a.requireStepUp(w, r, "any", identity.ActionPasskeyRemove, id, "removing a passkey", in.StepUp) {
		return
	}
	if err := a.o.Passkeys.Remove(r.Context(), principal(r).User, id); err != nil {
		a.Fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// totpEnroller enrols TOTP secrets kept in the store;
// identity.StoreTOTP implements it.
type totpEnroller interface {
	Enrolled(ctx context.Context, user string) (bool, error)
	Begin(ctx context.Context, user string) (identity.TOTPEnrolment, error)
	Confirm(ctx context.Context, user, code string) error
}

// totpBegin: POST /api/v1/totp/begin {step_up} starts enrolling a TOTP
// secret: the otpauth URL, the secret and a QR code. Replacing a secret
// the caller already enrolled needs a step-up (action totp.enrol, object
// the caller's name).
func (a *API) totpBegin(w http.ResponseWriter, r *http.Request) {
	if a.o.TOTP == nil {
		unavailable(w, "totp_disabled", "this broker does not enrol TOTP secrets")
		return
	}
	var in struct {
		StepUp *stepUpBody `json:"step_up"`
	}
	if !decodeOptional(w, r, &in) {
		return
	}
	user := principal(r).User
	enrolled, err := a.o.TOTP.Enrolled(r.Context(), user)
	if err != nil {
		a.Fail(w, err)
		return
	}
	if enrolled && !a.requireStepUp(w, r, "any", identity.ActionTOTPEnrol, user, "replacing your TOTP secret", in.StepUp) {
		return
	}
	if !enrolled && !a.requireFreshOrStepUp(w, r, identity.ActionTOTPEnrol, user, "setting up an authenticator app", in.StepUp) {
		return
	}
	e, err := a.o.TOTP.Begin(r.Context(), user)
	if err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, e)
}

// totpConfirm: POST /api/v1/totp {code} makes the pending secret the
// caller's second factor once a code from it matches.
func (a *API) totpConfirm(w http.ResponseWriter, r *http.Request) {
	if a.o.TOTP == nil {
		unavailable(w, "totp_disabled", "this broker does not enrol TOTP secrets")
		return
	}
	var in struct {
		Code string `json:"code"`
	}
	if err := DecodeJSON(r, &in); err != nil || in.Code == "" {
		WriteError(w, http.StatusBadRequest, "bad_request", "confirming a TOTP enrolment needs a code")
		return
	}
	if err := a.o.TOTP.Confirm(r.Context(), principal(r).User, in.Code); err != nil {
		a.Fail(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"enrolled": true})
}

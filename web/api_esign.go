package web

import (
	"encoding/json"
	"net/http"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/esign"
)

// signatures lists the meanings a signer may choose; *esign.Signer
// implements it.
type signatures interface {
	Meanings(action string) []string
}

// signatureBody is an electronic signature given with an approval, denial
// or unseal confirmation: the meaning and a fresh re-authentication
// (password and TOTP code, or a passkey assertion). It is never logged.
type signatureBody struct {
	Meaning  string `json:"meaning"`
	Password string `json:"password"`
	TOTP     string `json:"totp"`
	// Passkey is a passkey assertion (the PublicKeyCredential's JSON) for
	// a challenge from POST /api/v1/stepup/begin with action "signature"
	// and object "<approve|deny|unseal|review>:<ID>".
	Passkey json.RawMessage `json:"passkey,omitempty"`
}

// input is the ceremony's input for b, or nil without a body.
func (b *signatureBody) input(r *http.Request) *esign.Input {
	if b == nil {
		return nil
	}
	return &esign.Input{Meaning: b.Meaning, Password: b.Password, TOTP: b.TOTP, Passkey: b.Passkey, Source: ClientIP(r)}
}

// signatureMeanings answers the meanings a signer may choose per action,
// for the CLI and the web UI's signing dialogs, and whether unseal
// confirmations are signatures.
func (a *API) signatureMeanings(w http.ResponseWriter, r *http.Request) {
	out := map[string][]string{}
	for _, action := range []string{config.SignApprove, config.SignDeny, config.SignUnseal, config.SignReview} {
		if a.o.Signatures != nil {
			out[action] = a.o.Signatures.Meanings(action)
		} else {
			out[action] = a.current().Signatures.MeaningsFor(action)
		}
	}
	WriteJSON(w, http.StatusOK, map[string]any{"meanings": out, "unseal_required": a.current().Signatures.UnsealRequired()})
}

// signatureRequired reports whether decisions on target's role are
// electronic signatures.
func (a *API) signatureRequired(target, role string) bool {
	pol, ok := a.rolePolicy(target, role)
	return ok && pol.SignatureRequiredFor()
}

// stepUpRequired is the role's policy.step_up.
func (a *API) stepUpRequired(target, role string) string {
	pol, _ := a.rolePolicy(target, role)
	return pol.StepUp
}

func (a *API) rolePolicy(target, role string) (config.Policy, bool) {
	t, ok := a.current().FindTarget(target)
	if !ok {
		return config.Policy{}, false
	}
	ro, ok := t.FindRole(role)
	if !ok {
		return config.Policy{}, false
	}
	return ro.Policy, true
}

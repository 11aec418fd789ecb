package config

import (
	"net/url"
	"strings"
)

// Step-up requirements (Policy.StepUp, StepUpActions).
const (
	StepUpPasskey = "passkey"
	StepUpTOTP    = "totp"
	StepUpAny     = "any"
)

// ValidStepUp reports whether s names a step-up requirement or none.
func ValidStepUp(s string) bool {
	switch s {
	case "", StepUpPasskey, StepUpTOTP, StepUpAny:
		return true
	}
	return false
}

// WebAuthn configures the relying party passkeys are registered with.
type WebAuthn struct {
	// RPID is the relying party ID: the host name of the broker's web
	// UI or a registrable suffix of it. It is part of every registered
	// credential: changing it orphans existing passkeys. Default: the
	// host of public_url.
	RPID string `yaml:"rp_id"`
	// RPName is shown by the browser and the authenticator. Default:
	// "Custos".
	RPName string `yaml:"rp_name"`
	// Origins are the web origins (scheme://host[:port]) assertions may
	// come from. Default: the origin of public_url.
	Origins []string `yaml:"origins"`
}

// StepUpActions are the step-up requirements of sensitive actions that
// are not approvals (approvals take theirs from the role's policy). Each
// is passkey, totp or any; empty means none.
type StepUpActions struct {
	// TerminateSession: ending a live session. Default: none.
	TerminateSession string `yaml:"terminate_session"`
	// ExportEvidence: downloading a session's evidence bundle. Default:
	// none.
	ExportEvidence string `yaml:"export_evidence"`
	// BreakGlassConfirm: asking for and confirming a break-glass unseal
	// (each custodian's confirmation; not the ask of a drill the broker
	// starts). With passkey a confirmation carries a passkey assertion
	// bound to the unseal (or, for the ask, the account) besides the
	// password and code; totp and any accept the confirmation's TOTP
	// code. Default: none.
	BreakGlassConfirm string `yaml:"breakglass_confirm"`
}

// Resolved returns w with its defaults filled in from publicURL.
func (w WebAuthn) Resolved(publicURL string) WebAuthn {
	u, _ := url.Parse(publicURL)
	if w.RPID == "" && u != nil {
		w.RPID = u.Hostname()
	}
	if w.RPName == "" {
		w.RPName = "Custos"
	}
	if len(w.Origins) == 0 && u != nil && u.Host != "" {
		w.Origins = []string{u.Scheme + "://" + u.Host}
	}
	return w
}

func (c *Config) validateWebAuthn(ck *checker) {
	const p = "identity.webauthn."
	w := c.Identity.WebAuthn
	if strings.ContainsAny(w.RPID, ":/") {
		ck.add(p+"rp_id", "must be a host name (no scheme or port), not %q", w.RPID)
	}
	for _, o := range w.Origins {
		if u, err := url.Parse(o); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "" {
			ck.add(p+"origins", "%q is not an origin (scheme://host[:port])", o)
		}
	}
	s := c.Identity.StepUp
	if !ValidStepUp(s.TerminateSession) {
		ck.add("identity.step_up.terminate_session", "must be passkey, totp or any, not %q", s.TerminateSession)
	}
	if !ValidStepUp(s.ExportEvidence) {
		ck.add("identity.step_up.export_evidence", "must be passkey, totp or any, not %q", s.ExportEvidence)
	}
	if !ValidStepUp(s.BreakGlassConfirm) {
		ck.add("identity.step_up.breakglass_confirm", "must be passkey, totp or any, not %q", s.BreakGlassConfirm)
	}
}

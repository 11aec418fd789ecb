package identity

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/custos-pam/custos/broker/config"
)

// SSOUser is who an ID token says signed in, mapped onto Custos.
type SSOUser struct {
	// Identity has the Custos user name, email and the Custos groups the
	// provider groups map to.
	Identity
	Issuer, Subject string
	// ProviderGroups are the groups the token listed, before mapping.
	ProviderGroups []string
	// AuthTime is the token's auth_time, or zero.
	AuthTime time.Time
	// MFA is set when the token's amr names a second factor.
	MFA bool
}

// maxSSOName bounds a user name taken from a claim.
const maxSSOName = 128

// mfaAMR are amr values (RFC 8176) that mean a second factor was used.
var mfaAMR = []string{"mfa", "otp", "hwk", "swk", "sms", "fpt", "face", "pin", "sc"}

// MapClaims maps an ID token's claims onto a Custos user by cfg (with
// defaults applied): the user name from UsernameClaim, the email from
// EmailClaim, and Custos groups through GroupMap from the provider groups
// in GroupsClaim. A user outside AllowedGroups, or whose name claim is
// missing or not a plain name, is refused with CodeLoginFailed.
func MapClaims(claims map[string]any, cfg config.OIDC) (SSOUser, error) {
	cfg = cfg.WithDefaults()
	var u SSOUser
	u.Issuer, _ = claims["iss"].(string)
	u.Subject, _ = claims["sub"].(string)
	name, _ := claims[cfg.UsernameClaim].(string)
	if err := checkSSOName(name); err != nil {
		return u, loginFailed(fmt.Sprintf("sso: claim %s: %v", cfg.UsernameClaim, err))
	}
	u.Name = name
	u.Email, _ = claims[cfg.EmailClaim].(string)
	u.DisplayName, _ = claims["name"].(string)
	switch g := claims[cfg.GroupsClaim].(type) {
	case string:
		u.ProviderGroups = []string{g}
	case []any:
		for _, v := range g {
			if s, ok := v.(string); ok {
				u.ProviderGroups = append(u.ProviderGroups, s)
			}
		}
	case []string:
		u.ProviderGroups = slices.Clone(g)
	}
	groups, err := mapGroups(cfg, name, u.ProviderGroups)
	if err != nil {
		return u, err
	}
	u.Groups = groups
	if at, ok := claims["auth_time"].(float64); ok && at > 0 {
		u.AuthTime = time.Unix(int64(at), 0).UTC()
	}
	if amr, ok := claims["amr"].([]any); ok {
		for _, v := range amr {
			if s, ok := v.(string); ok && slices.Contains(mfaAMR, s) {
				u.MFA = true
			}
		}
	}
	return u, nil
}

// checkSSOName accepts a printable name without spaces or path and
// control characters.
func checkSSOName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("missing or not a string")
	case len(name) > maxSSOName:
		return fmt.Errorf("longer than %d bytes", maxSSOName)
	case strings.ContainsAny(name, "/\\:"):
		return fmt.Errorf("contains / \\ or :")
	}
	for _, r := range name {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("contains a space or control character")
		}
	}
	return nil
}

// mapGroups applies allowed_groups and group_map (cfg with defaults) to a
// user's provider groups and returns the Custos groups, sorted.
func mapGroups(cfg config.OIDC, name string, provider []string) ([]string, error) {
	if len(cfg.AllowedGroups) > 0 && !slices.ContainsFunc(provider, func(g string) bool { return slices.Contains(cfg.AllowedGroups, g) }) {
		return nil, loginFailed(fmt.Sprintf("sso: user %s is in none of identity.oidc.allowed_groups", name))
	}
	var out []string
	for _, g := range provider {
		if m, ok := cfg.GroupMap[g]; ok && !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return out, nil
}

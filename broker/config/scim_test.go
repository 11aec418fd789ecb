package config

import (
	"strings"
	"testing"
)

func TestSCIMConfig(t *testing.T) {
	t.Setenv("SCIM_TOK", strings.Repeat("x", 32))
	t.Setenv("SCIM_SHORT", "short")
	for _, tc := range []struct{ yaml, want string }{
		{"identity: {scim: {token: env:SCIM_TOK}}\n", ""},
		{"identity: {scim: {}}\n", "identity.scim.token: required"},
		{"identity: {scim: {token: env:SCIM_SHORT}}\n", "identity.scim.token: must be at least 32 characters"},
		{"identity: {scim: {token: env:SCIM_TOK, security_admin_groups: [dbas]}}\n", "dbas is not listed in security_admins"},
	} {
		c, err := Parse([]byte(minimal + tc.yaml))
		switch {
		case tc.want == "" && (err != nil || c.Identity.SCIM == nil):
			t.Errorf("%q: %v", tc.yaml, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

package config

import "slices"

// SCIM turns on SCIM 2.0 provisioning under /scim/v2: the identity
// provider creates, updates, deactivates and deletes users and groups.
type SCIM struct {
	// Token is the bearer token the provider presents (env:NAME or
	// file:/path), at least 32 characters. Required.
	Token Secret `yaml:"token"`
	// SecurityAdminGroups are the SCIM groups whose members are security
	// admins; each must also be listed in security_admins. Default: none,
	// SCIM memberships never make a security admin.
	SecurityAdminGroups []string `yaml:"security_admin_groups"`
}

func (c *Config) validateSCIM(ck *checker) {
	s := c.Identity.SCIM
	if s == nil {
		return
	}
	const p = "identity.scim."
	if !s.Token.IsSet() {
		ck.add(p+"token", "required (env:NAME or file:/path)")
	} else if tok, err := s.Token.Resolve(); err == nil && len(tok) < 32 {
		ck.add(p+"token", "must be at least 32 characters")
	}
	for i, g := range s.SecurityAdminGroups {
		if !slices.Contains(c.SecurityAdmins, g) {
			ck.add(p+"security_admin_groups", "[%d] %s is not listed in security_admins", i, g)
		}
	}
}

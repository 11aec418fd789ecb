package kri_test

import (
	"context"
	"testing"

	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/broker/kri"
)

// factorList is what identity.Service.Factors answers for a broker with
// config, single sign-on and SCIM users (its own tests check how it finds
// each user's factors).
type factorList []identity.UserFactors

func (f factorList) Factors(context.Context) ([]identity.UserFactors, error) { return f, nil }

// TestKRISecondFactorAcrossSources: with the users' factors from the
// identity service, the second-factor indicators count every enabled user
// without one, wherever the user comes from, and list each of them; a
// disabled user counts in neither the number nor the ratio.
func TestKRISecondFactorAcrossSources(t *testing.T) {
	e := newEnv(t)
	users := factorList{
		{Name: "alice", Sources: []string{identity.SourceConfig}, Enabled: true, Factors: []string{identity.FactorPassword, identity.FactorTOTP}, SecondFactor: true},
		{Name: "bob", Sources: []string{identity.SourceConfig}, Enabled: true, Factors: []string{identity.FactorPassword}},
		{Name: "dora", Sources: []string{identity.SourceSSO}, Enabled: true, Factors: []string{identity.FactorSSO}},
		{Name: "oscar", Sources: []string{identity.SourceSSO}, Enabled: true, Factors: []string{identity.FactorSSOMFA}, SecondFactor: true},
		{Name: "paula", Sources: []string{identity.SourceSCIM, identity.SourceSSO}, Enabled: true, Factors: []string{identity.FactorSSO}},
		{Name: "quinn", Sources: []string{identity.SourceSCIM}, Enabled: true, Factors: []string{identity.FactorPasskey}, SecondFactor: true},
		{Name: "ralph", Sources: []string{identity.SourceSCIM}, Enabled: false},
	}
	var err error
	e.c, err = kri.New(kri.Options{Config: e.cfg, Store: e.st, Drills: e.bg, Now: e.clock, Factors: users})
	if err != nil {
		t.Fatal(err)
	}
	n := e.get("users_without_mfa")
	if value(n) != 3 || !hasRecord(n, "bob") || !hasRecord(n, "dora") || !hasRecord(n, "paula") || hasRecord(n, "ralph") || hasRecord(n, "quinn") {
		t.Errorf("users_without_mfa = %v, records %+v; want bob (config), dora (SSO), paula (SCIM)", value(n), n.Records)
	}
	if r := e.get("users_without_mfa_ratio"); value(r) != 0.5 {
		t.Errorf("users_without_mfa_ratio = %v, want 3 of 6 enabled users", value(r))
	}
}

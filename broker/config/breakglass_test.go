package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const breakGlassBase = `
users:
  - {name: sam, totp_secret: JBSWY3DPEHPK3PXP}
  - {name: carol, totp_secret: JBSWY3DPEHPK3PXP}
  - {name: dave}
groups:
  - {name: custodians, members: [sam, carol]}
  - {name: approvers, members: [dave]}
targets:
  - name: db
    kind: postgres
    address: 127.0.0.1:5432
    roles:
      - {name: readonly, policy: {approvers: [approvers]}}
      - {name: bg, vault_role: breakglass}
  - name: host
    kind: ssh
    address: 127.0.0.1:22
    ssh: {host_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"]}
    roles:
      - {name: root, login: root, vault_role: ops, policy: {approvers: [approvers]}}
breakglass:
`

func TestBreakGlassDefaults(t *testing.T) {
	c, err := Parse([]byte(breakGlassBase + `
  - {name: pg-admin, target: db, role: bg, custodians: [custodians]}
  - {name: host-root, target: host, role: root, custodians: [custodians]}
`))
	if err != nil {
		t.Fatal(err)
	}
	a, ok := c.FindBreakGlass("pg-admin")
	if !ok {
		t.Fatal("pg-admin not found")
	}
	if a.Required != 2 || a.MaxOpen.D() != time.Hour || a.ConfirmWithin.D() != 15*time.Minute || a.Reveal || !a.TOTPRequired() {
		t.Errorf("defaults: %+v", a)
	}
	if a.Credential.Type != BreakGlassDatabaseStatic || a.Credential.VaultRole != "breakglass" || a.Drill.Probe != "SELECT 1" || a.Drill.Schedule != "quarterly" {
		t.Errorf("credential and drill defaults: %+v %+v", a.Credential, a.Drill)
	}
	h, _ := c.FindBreakGlass("host-root")
	if h.Credential.Type != BreakGlassSSHCA || h.Credential.VaultRole != "ops" || h.Drill.Probe != "true" {
		t.Errorf("ssh defaults: %+v %+v", h.Credential, h.Drill)
	}
	// The role's approvers default to the custodians, so the role needs
	// no approval policy of its own.
	tg, _ := c.FindTarget("db")
	r, _ := tg.FindRole("bg")
	if strings.Join(r.Policy.Approvers, ",") != "custodians" {
		t.Errorf("break-glass role approvers %v", r.Policy.Approvers)
	}
	if got, ok := c.BreakGlassFor("db", "bg"); !ok || got.Name != "pg-admin" {
		t.Errorf("BreakGlassFor: %v %v", got, ok)
	}
	if _, ok := c.BreakGlassFor("db", "readonly"); ok {
		t.Error("readonly is not break-glass")
	}
}

func TestBreakGlassValidation(t *testing.T) {
	tests := []struct {
		name, accounts, path, msg string
	}{
		{"one custodian needs the flag", `[{name: a, target: db, role: bg, custodians: [custodians], required: 1}]`, "breakglass[0].required", "single_custodian"},
		{"one custodian with the flag", `[{name: a, target: db, role: bg, custodians: [custodians], required: 1, single_custodian: true}]`, "", ""},
		{"more required than custodians", `[{name: a, target: db, role: bg, custodians: [sam, carol], required: 3}]`, "breakglass[0].required", "only 2"},
		{"custodian without totp", `[{name: a, target: db, role: bg, custodians: [sam, dave]}]`, "breakglass[0].custodians", "dave has no totp_secret"},
		{"password alone when allowed", `[{name: a, target: db, role: bg, custodians: [sam, dave], require_totp: false}]`, "", ""},
		{"unknown custodian", `[{name: a, target: db, role: bg, custodians: [custodians, nobody]}]`, "breakglass[0].custodians[1]", "unknown"},
		{"unknown target", `[{name: a, target: nope, role: bg, custodians: [custodians]}]`, "breakglass[0].target", "unknown target"},
		{"unknown role", `[{name: a, target: db, role: nope, custodians: [custodians]}]`, "breakglass[0].role", "no role"},
		{"role used twice", `[{name: a, target: db, role: bg, custodians: [custodians]}, {name: b, target: db, role: bg, custodians: [custodians]}]`, "breakglass[1].role", "already"},
		{"duplicate name", `[{name: a, target: db, role: bg, custodians: [custodians]}, {name: a, target: host, role: root, custodians: [custodians]}]`, "breakglass[1].name", "duplicate"},
		{"type against target kind", `[{name: a, target: db, role: bg, custodians: [custodians], credential: {type: ssh_ca}}]`, "breakglass[0].credential.type", "ssh target"},
		{"unknown type", `[{name: a, target: db, role: bg, custodians: [custodians], credential: {type: kv}}]`, "breakglass[0].credential.type", "must be"},
		{"reveal without secret", `[{name: a, target: host, role: root, custodians: [custodians], reveal: true}]`, "breakglass[0].reveal", "no standing secret"},
		{"bad cron", `[{name: a, target: db, role: bg, custodians: [custodians], drill: {schedule: "61 * * * *"}}]`, "breakglass[0].drill.schedule", "minute"},
		{"weekday with cron", `[{name: a, target: db, role: bg, custodians: [custodians], drill: {schedule: "0 9 * * *", weekday: tue}}]`, "breakglass[0].drill.schedule", "weekday"},
		{"negative open time", `[{name: a, target: db, role: bg, custodians: [custodians], max_open: -1s}]`, "breakglass[0].max_open", "> 0"},
		{"bad name", `[{name: "a b", target: db, role: bg, custodians: [custodians]}]`, "breakglass[0].name", "spaces"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.TrimSuffix(breakGlassBase, "breakglass:\n") + "breakglass: " + tc.accounts + "\n"
			_, err := Parse([]byte(src))
			if tc.path == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("want a validation error at %s, got %v", tc.path, err)
			}
			for _, p := range ve.Problems {
				if p.Path == tc.path && strings.Contains(p.Message, tc.msg) {
					return
				}
			}
			t.Errorf("no problem %q at %s in:\n%v", tc.msg, tc.path, err)
		})
	}
}

package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker/breakglass/schedule"
)

// BreakGlassAccount is a sealed emergency account: a privileged principal
// on one target whose credential only Vault holds, opened when enough
// custodians agree and rotated when it closes.
type BreakGlassAccount struct {
	// Name identifies the account (custos breakglass unseal NAME).
	Name string `yaml:"name"`
	// Target is the configured target the account reaches.
	Target string `yaml:"target"`
	// Role is the target role an open account is used through (its login,
	// shell and recording settings). Grants for it come only from unseals:
	// ordinary requests for it are refused. Its policy's approvers default
	// to the custodians.
	Role string `yaml:"role"`
	// Credential says where the principal's secret lives and how it is
	// rotated.
	Credential BreakGlassCredential `yaml:"credential"`
	// Custodians are users and groups who may unseal the account.
	Custodians []string `yaml:"custodians"`
	// Required is how many distinct custodians must confirm an unseal
	// (M of N). Default: 2. 1 needs SingleCustodian.
	Required int `yaml:"required"`
	// SingleCustodian allows Required: 1. Every unseal is then audited and
	// announced as single-custodian. Default: false.
	SingleCustodian bool `yaml:"single_custodian"`
	// MaxOpen is how long an unsealed account stays open before it is
	// closed and rotated. Default: 1h.
	MaxOpen Duration `yaml:"max_open"`
	// ConfirmWithin is how long an unseal request waits for its
	// confirmations. Default: 15m.
	ConfirmWithin Duration `yaml:"confirm_within"`
	// Reveal lets a custodian of an open account see its secret. Each
	// reveal is audited and the account is marked for rotation. Default:
	// false (the secret is only injected by the proxies).
	Reveal bool `yaml:"reveal"`
	// RequireTOTP requires every custodian to have a TOTP second factor,
	// asked again on each confirmation. Default (nil): true.
	RequireTOTP *bool `yaml:"require_totp"`
	// OfflineWindow is how long the broker may be unavailable before, on
	// its next start, the account is rotated as if it had been unsealed
	// out of band (custodians may read it from Vault directly while the
	// broker is down). Default: 15m.
	OfflineWindow Duration `yaml:"offline_window"`
	// AlertEvery is how often a compromised account (rotation failed) is
	// announced again and its rotation retried. Default: 15m.
	AlertEvery Duration `yaml:"alert_every"`
	// Drill schedules the account's drills.
	Drill BreakGlassDrill `yaml:"drill"`
}

// BreakGlassCredential is where a break-glass principal's secret lives.
type BreakGlassCredential struct {
	// Type is "database_static" (a Vault database static role, for
	// PostgreSQL targets: database/static-creds/<vault_role>, rotated with
	// database/rotate-role) or "ssh_ca" (a certificate Vault's SSH CA signs
	// per session for the role's login, for SSH targets; nothing standing
	// to rotate). Default: database_static for PostgreSQL targets, ssh_ca
	// for SSH targets.
	Type string `yaml:"type"`
	// VaultRole is the Vault role: the database static role, or the SSH
	// role that signs. Default: the target role's vault_role.
	VaultRole string `yaml:"vault_role"`
}

// Break-glass credential types.
const (
	BreakGlassDatabaseStatic = "database_static"
	BreakGlassSSHCA          = "ssh_ca"
)

// BreakGlassDrill schedules an account's drills.
type BreakGlassDrill struct {
	// Schedule is "quarterly", "monthly" or a five-field cron expression
	// (minute hour day-of-month month day-of-week). A drill is due at the
	// first scheduled time after the last successful drill. Default:
	// quarterly.
	Schedule string `yaml:"schedule"`
	// Weekday makes a quarterly or monthly drill due on the last such
	// weekday (mon..sun) of the period. Default: the period's last day.
	Weekday string `yaml:"weekday"`
	// At is the HH:MM a quarterly or monthly drill is due. Default: 10:00.
	At string `yaml:"at"`
	// TZ is the schedule's IANA time zone. Default: UTC.
	TZ string `yaml:"tz"`
	// RemindBefore reminds custodians this long before a drill is due.
	// Default: 168h (a week).
	RemindBefore Duration `yaml:"remind_before"`
	// Probe is the harmless statement (PostgreSQL) or command (SSH) the
	// drill runs with the credential. Default: "SELECT 1" / "true".
	Probe string `yaml:"probe"`
}

// TOTPRequired reports whether custodians need a TOTP second factor.
func (a BreakGlassAccount) TOTPRequired() bool { return a.RequireTOTP == nil || *a.RequireTOTP }

// ScheduleSpec is the drill schedule as schedule.Parse takes it.
func (d BreakGlassDrill) ScheduleSpec() schedule.Spec {
	return schedule.Spec{Expr: d.Schedule, Weekday: d.Weekday, At: d.At, TZ: d.TZ}
}

// FindBreakGlass returns the named break-glass account.
func (c *Config) FindBreakGlass(name string) (*BreakGlassAccount, bool) {
	for i := range c.BreakGlass {
		if c.BreakGlass[i].Name == name {
			return &c.BreakGlass[i], true
		}
	}
	return nil, false
}

// BreakGlassFor returns the break-glass account that uses role on target.
func (c *Config) BreakGlassFor(target, role string) (*BreakGlassAccount, bool) {
	for i := range c.BreakGlass {
		if c.BreakGlass[i].Target == target && c.BreakGlass[i].Role == role {
			return &c.BreakGlass[i], true
		}
	}
	return nil, false
}

func (c *Config) applyBreakGlassDefaults() {
	for i := range c.BreakGlass {
		a := &c.BreakGlass[i]
		if a.Required == 0 {
			a.Required = 2
		}
		setDur(&a.MaxOpen, time.Hour)
		setDur(&a.ConfirmWithin, 15*time.Minute)
		setDur(&a.OfflineWindow, 15*time.Minute)
		setDur(&a.AlertEvery, 15*time.Minute)
		setDur(&a.Drill.RemindBefore, 7*24*time.Hour)
		setStr(&a.Drill.Schedule, "quarterly")
		t, ok := c.FindTarget(a.Target)
		if !ok {
			continue
		}
		if a.Credential.Type == "" {
			switch t.Kind {
			case "postgres":
				a.Credential.Type = BreakGlassDatabaseStatic
			case "ssh":
				a.Credential.Type = BreakGlassSSHCA
			}
		}
		if a.Drill.Probe == "" {
			a.Drill.Probe = "SELECT 1"
			if t.Kind == "ssh" {
				a.Drill.Probe = "true"
			}
		}
		if r, ok := t.FindRole(a.Role); ok {
			setStr(&a.Credential.VaultRole, r.VaultRoleOrDefault())
			if len(r.Policy.Approvers) == 0 {
				r.Policy.Approvers = append([]string(nil), a.Custodians...)
			}
		}
	}
}

func (c *Config) validateBreakGlass(ck *checker, users, groups map[string]bool) {
	members := map[string][]string{}
	for _, g := range c.Groups {
		members[g.Name] = g.Members
	}
	totp := map[string]bool{}
	for _, u := range c.Users {
		totp[u.Name] = u.TOTPSecret.IsSet()
	}
	names := map[string]bool{}
	roles := map[string]string{}
	for i := range c.BreakGlass {
		a := &c.BreakGlass[i]
		p := fmt.Sprintf("breakglass[%d]", i)
		switch {
		case a.Name == "":
			ck.add(p+".name", "required")
		case strings.ContainsAny(a.Name, "@/ \t"):
			ck.add(p+".name", "must not contain '@', '/' or spaces")
		case names[a.Name]:
			ck.add(p+".name", "duplicate break-glass account %q", a.Name)
		}
		names[a.Name] = true
		t, ok := c.FindTarget(a.Target)
		if !ok {
			ck.add(p+".target", "unknown target %q", a.Target)
		} else if _, ok := t.FindRole(a.Role); !ok {
			ck.add(p+".role", "target %s has no role %q", a.Target, a.Role)
		} else if other, dup := roles[a.Target+"/"+a.Role]; dup {
			ck.add(p+".role", "role %s of %s is already break-glass account %q", a.Role, a.Target, other)
		} else {
			roles[a.Target+"/"+a.Role] = a.Name
		}
		if ok {
			want := map[string]string{BreakGlassDatabaseStatic: "postgres", BreakGlassSSHCA: "ssh"}[a.Credential.Type]
			switch {
			case want == "":
				ck.add(p+".credential.type", "must be database_static or ssh_ca, not %q", a.Credential.Type)
			case want != t.Kind:
				ck.add(p+".credential.type", "%s needs a %s target; %s is %s", a.Credential.Type, want, a.Target, t.Kind)
			}
		}
		if a.Reveal && a.Credential.Type == BreakGlassSSHCA {
			ck.add(p+".reveal", "an ssh_ca account has no standing secret to reveal")
		}
		if a.Credential.VaultRole == "" {
			ck.add(p+".credential.vault_role", "required")
		}
		people := map[string]bool{}
		for j, n := range a.Custodians {
			switch {
			case users[n]:
				people[n] = true
			case groups[n]:
				for _, m := range members[n] {
					people[m] = true
				}
			default:
				ck.add(fmt.Sprintf("%s.custodians[%d]", p, j), "unknown user or group %q", n)
			}
		}
		switch {
		case a.Required < 1:
			ck.add(p+".required", "must be >= 1")
		case a.Required == 1 && !a.SingleCustodian:
			ck.add(p+".required", "1 custodian alone may unseal only with single_custodian: true")
		case a.Required > len(people):
			ck.add(p+".required", "needs %d custodians but only %d are named", a.Required, len(people))
		}
		if a.TOTPRequired() {
			for n := range people {
				if !totp[n] {
					ck.add(p+".custodians", "custodian %s has no totp_secret (each confirmation needs a fresh second factor; set require_totp: false to accept a password alone)", n)
				}
			}
		}
		for field, d := range map[string]Duration{"max_open": a.MaxOpen, "confirm_within": a.ConfirmWithin,
			"offline_window": a.OfflineWindow, "alert_every": a.AlertEvery, "drill.remind_before": a.Drill.RemindBefore} {
			if d <= 0 {
				ck.add(p+"."+field, "must be > 0")
			}
		}
		if _, err := schedule.Parse(a.Drill.ScheduleSpec()); err != nil {
			ck.add(p+".drill.schedule", "%v", err)
		}
	}
}

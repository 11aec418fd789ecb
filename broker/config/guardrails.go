package config

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Guardrails are a PostgreSQL role's statement guardrails: every statement
// a session of the role sends is parsed and classified, and each built-in
// rule it touches has an action. A role without guardrails is relayed
// without parsing.
type Guardrails struct {
	// Rules maps a rule (GuardrailRules) to its action (deny, hold, alert
	// or allow). Default: DefaultGuardrailActions for rules not listed.
	Rules map[string]string `yaml:"rules"`
	// Unparsed is the action for a statement the parser cannot parse:
	// deny, hold or alert (alert lets it run). Default: deny.
	Unparsed string `yaml:"unparsed"`
	// ProtectedTables lists tables with classified columns ("table" or
	// "schema.table", as PostgreSQL folds unquoted names): DDL naming them
	// is protected_ddl, exporting them is bulk_export. Default: none.
	ProtectedTables []string `yaml:"protected_tables"`
	// ExportRows is the planner row estimate above which a SELECT without
	// LIMIT on a protected table is a bulk export. Default: 1000.
	ExportRows int `yaml:"export_rows"`
	// HoldTimeout is how long a held statement waits for a decision before
	// it is denied. Default: 5m.
	HoldTimeout Duration `yaml:"hold_timeout"`
}

// Guardrail actions.
const (
	GuardDeny  = "deny"
	GuardHold  = "hold"
	GuardAlert = "alert"
	GuardAllow = "allow"
)

// GuardrailRules are the built-in rules, as protocols/postgres/guard names
// them (a test there checks both lists agree).
var GuardrailRules = []string{"drop", "truncate", "alter_owner", "copy_program", "set_role",
	"update_without_where", "delete_without_where", "protected_ddl", "bulk_export",
	"dynamic_sql", "opaque_code"}

// DefaultGuardrailActions is the action of a rule a role's guardrails do
// not list.
var DefaultGuardrailActions = map[string]string{
	"drop": GuardDeny, "truncate": GuardDeny, "alter_owner": GuardDeny, "copy_program": GuardDeny,
	"set_role": GuardDeny, "update_without_where": GuardHold, "delete_without_where": GuardHold,
	"protected_ddl": GuardHold, "bulk_export": GuardHold, "dynamic_sql": GuardHold, "opaque_code": GuardHold,
}

// Default guardrail values.
const (
	DefaultExportRows  = 1000
	DefaultHoldTimeout = 5 * time.Minute
)

// Action returns the action for rule.
func (g *Guardrails) Action(rule string) string {
	if a, ok := g.Rules[rule]; ok {
		return a
	}
	return DefaultGuardrailActions[rule]
}

// UnparsedAction returns the action for unparsable statements.
func (g *Guardrails) UnparsedAction() string {
	if g.Unparsed == "" {
		return GuardDeny
	}
	return g.Unparsed
}

// ExportRowsOrDefault returns ExportRows or its default.
func (g *Guardrails) ExportRowsOrDefault() int {
	if g.ExportRows <= 0 {
		return DefaultExportRows
	}
	return g.ExportRows
}

// HoldTimeoutOrDefault returns HoldTimeout or its default.
func (g *Guardrails) HoldTimeoutOrDefault() time.Duration {
	if g.HoldTimeout <= 0 {
		return DefaultHoldTimeout
	}
	return g.HoldTimeout.D()
}

// validateGuardrails checks a role's guardrails; kind is the target's.
func validateGuardrails(ck *checker, p string, kind string, g *Guardrails) {
	if g == nil {
		return
	}
	if kind != "postgres" {
		ck.add(p, "guardrails apply to postgres targets only")
	}
	for rule, action := range g.Rules {
		if !slices.Contains(GuardrailRules, rule) {
			ck.add(p+".rules."+rule, "unknown rule (one of %s)", strings.Join(GuardrailRules, ", "))
		}
		switch action {
		case GuardDeny, GuardHold, GuardAlert, GuardAllow:
		default:
			ck.add(p+".rules."+rule, "action must be deny, hold, alert or allow, not %q", action)
		}
	}
	switch g.Unparsed {
	case "", GuardDeny, GuardHold, GuardAlert:
	default:
		ck.add(p+".unparsed", "must be deny, hold or alert, not %q", g.Unparsed)
	}
	for i, t := range g.ProtectedTables {
		if n := strings.Count(t, "."); t == "" || n > 1 || strings.TrimSpace(t) != t {
			ck.add(fmt.Sprintf("%s.protected_tables[%d]", p, i), "must be table or schema.table, not %q", t)
		}
	}
	if g.ExportRows < 0 {
		ck.add(p+".export_rows", "must be >= 0")
	}
	if g.HoldTimeout < 0 {
		ck.add(p+".hold_timeout", "must be >= 0")
	}
}

package config

import (
	"strings"
	"testing"
	"time"
)

func TestGuardrailsConfig(t *testing.T) {
	good := minimal + `        guardrails:
          protected_tables: [public.subjects, allocation]
          rules: {truncate: hold, bulk_export: alert}
          hold_timeout: 2m
`
	c, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	g := c.Targets[0].Roles[0].Guardrails
	if g == nil {
		t.Fatal("guardrails not parsed")
	}
	if g.Action("truncate") != GuardHold || g.Action("drop") != GuardDeny || g.Action("delete_without_where") != GuardHold {
		t.Errorf("actions: truncate=%s drop=%s", g.Action("truncate"), g.Action("drop"))
	}
	if g.UnparsedAction() != GuardDeny || g.ExportRowsOrDefault() != DefaultExportRows || g.HoldTimeoutOrDefault() != 2*time.Minute {
		t.Errorf("defaults: %+v", g)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"rules: {drop: maybe}", "guardrails.rules.drop: action must be"},
		{"rules: {delete_all: deny}", "guardrails.rules.delete_all: unknown rule"},
		{"unparsed: allow", "guardrails.unparsed: must be deny, hold or alert"},
		{"protected_tables: [a.b.c]", "guardrails.protected_tables[0]"},
		{"hold_timeout: -1m", "guardrails.hold_timeout"},
	} {
		_, err := Parse([]byte(minimal + "        guardrails: {" + tc.yaml + "}\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

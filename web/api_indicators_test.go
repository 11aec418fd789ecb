package web_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/custos-pam/custos/broker/kri"
	"github.com/custos-pam/custos/web/ui/uitest"
)

// The dashboard's API: security sees every indicator, one indicator's
// records with their links, the action a limit crossing opened, and
// closes it with a comment; the close is audited.
func TestIndicatorAPI(t *testing.T) {
	env := uitest.Start(t)
	env.Seed(t, 0)
	x := &authzEnv{env: env}
	sam := signIn(t, x, security, false)

	st, b := sam.do(t, x, "GET", "/api/v1/indicators", nil)
	if st != http.StatusOK {
		t.Fatalf("list: %d %s", st, b)
	}
	var list struct {
		Indicators []kri.Indicator `json:"indicators"`
		Actions    []kri.Action    `json:"actions"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Indicators) != len(kri.Names()) {
		t.Fatalf("%d indicators, want %d", len(list.Indicators), len(kri.Names()))
	}
	i := slices.IndexFunc(list.Indicators, func(in kri.Indicator) bool { return in.Name == "users_without_mfa" })
	mfa := list.Indicators[i]
	if mfa.Value == nil || *mfa.Value != 4 || mfa.Status != kri.StatusCrossed || mfa.RecordCount != 4 || mfa.Records != nil {
		t.Fatalf("users_without_mfa in the list: %+v", mfa)
	}
	if len(list.Actions) != 0 {
		t.Fatalf("actions before any evaluation: %+v", list.Actions)
	}

	st, b = sam.do(t, x, "GET", "/api/v1/indicators/users_without_mfa", nil)
	var one kri.Indicator
	if st != http.StatusOK || json.Unmarshal(b, &one) != nil {
		t.Fatalf("one: %d %s", st, b)
	}
	j := slices.IndexFunc(one.Records, func(r kri.Record) bool { return r.ID == "alice" })
	if j < 0 || one.Records[j].Link != "/ui/audit?actor=alice" {
		t.Fatalf("records %+v lack alice with her audit link", one.Records)
	}
	if st, _ := sam.do(t, x, "GET", "/api/v1/indicators/no_such", nil); st != http.StatusNotFound {
		t.Fatalf("unknown indicator: %d", st)
	}

	for range 3 {
		if _, err := env.Indicators.Evaluate(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	var acts []kri.Action
	st, b = sam.do(t, x, "GET", "/api/v1/indicators/actions", nil)
	if st != http.StatusOK || json.Unmarshal(b, &acts) != nil || len(acts) != 1 {
		t.Fatalf("actions after three evaluations: %d %s", st, b)
	}
	if n := len(env.AuditRecords(t, kri.AuditLimitCrossed)); n != 1 {
		t.Fatalf("%d kri.limit_crossed records", n)
	}
	if texts := env.Notices.Texts(); !slices.ContainsFunc(texts, func(s string) bool { return strings.Contains(s, "users_without_mfa > 0") }) {
		t.Fatalf("no security notice of the crossing: %q", texts)
	}
	path := "/api/v1/indicators/actions/" + acts[0].ID + "/close"
	if st, b := sam.do(t, x, "POST", path, map[string]string{}); st != http.StatusUnprocessableEntity {
		t.Fatalf("close without comment: %d %s", st, b)
	}
	if st, b := sam.do(t, x, "POST", path, map[string]string{"comment": "TOTP rollout planned, CHG-12"}); st != http.StatusOK {
		t.Fatalf("close: %d %s", st, b)
	}
	if st, _ := sam.do(t, x, "POST", path, map[string]string{"comment": "again"}); st != http.StatusConflict {
		t.Fatalf("second close: %d", st)
	}
	closes := env.AuditRecords(t, kri.AuditActionClose)
	if len(closes) != 1 || closes[0].Actor != "sam" || closes[0].Reason != "TOTP rollout planned, CHG-12" {
		t.Fatalf("close audit %+v", closes)
	}
}

package scim

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/custos-pam/custos/broker/identity"
)

// FuzzParseFilter: any filter string is parsed or refused, never a panic.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{`userName eq "a"`, `id eq "g" and members[value eq "u"]`, `x eq "\"`, `"`, ` and `, `userName eq "a" and`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		terms, err := parseFilter(s)
		if err == nil && strings.TrimSpace(s) != "" && len(terms) == 0 {
			t.Fatalf("%q: no terms and no error", s)
		}
	})
}

// FuzzPatch: any PATCH body is applied to a user and a group or refused,
// never a panic, and never leaves an empty userName.
func FuzzPatch(f *testing.F) {
	for _, s := range []string{
		`{"Operations":[{"op":"replace","value":{"active":false}}]}`,
		`{"Operations":[{"op":"Replace","path":"active","value":"False"}]}`,
		`{"Operations":[{"op":"remove","path":"members[value eq \"u1\"]"}]}`,
		`{"Operations":[{"op":"add","path":"members","value":[{"value":"u2"}]}]}`,
		`{"Operations":[{"op":"replace","path":"userName","value":""}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p patchRequest
		if json.Unmarshal(b, &p) != nil {
			return
		}
		u := &identity.SCIMUser{ID: "u1", UserName: "dave", Active: true}
		if p.applyUser(u) == nil && u.UserName == "" {
			t.Fatal("empty userName accepted")
		}
		g := &identity.SCIMGroup{ID: "g1", DisplayName: "dbas", Members: []string{"u1"}}
		_ = p.applyGroup(g)
	})
}

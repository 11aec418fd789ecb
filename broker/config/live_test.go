package config

import (
	"slices"
	"testing"
)

func TestMerge(t *testing.T) {
	parse := func(s string) *Config {
		t.Helper()
		c, err := Parse([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	base := `
listen: {http: "127.0.0.1:8080"}
users: [{name: alice}, {name: carol}]
groups: [{name: ops, members: [carol]}]
targets:
  - {name: db, kind: postgres, address: "127.0.0.1:5432", roles: [{name: ro, policy: {approvers: [ops]}}]}
`
	cur := parse(base)
	next := parse(base + `  - {name: db2, kind: postgres, address: "127.0.0.1:5433", roles: [{name: ro, policy: {approvers: [ops]}}]}
notify: {grant_ending_before: 5m}
`)
	next.Listen.HTTP = "127.0.0.1:9090"
	next.Users = append(next.Users, User{Name: "bob"})
	m, notApplied := Merge(cur, next)
	if len(m.Targets) != 2 || len(m.Users) != 3 || m.Notify.EndingBefore().String() != "5m0s" {
		t.Fatalf("reloadable parts not taken: %+v", m)
	}
	if m.Listen.HTTP != "127.0.0.1:8080" || !slices.Equal(notApplied, []string{"listen"}) {
		t.Fatalf("listen: %s, not applied: %v", m.Listen.HTTP, notApplied)
	}
	if cur.Listen.HTTP != "127.0.0.1:8080" || len(cur.Targets) != 1 {
		t.Fatal("Merge changed the running config")
	}
	if _, notApplied := Merge(cur, cur); len(notApplied) != 0 {
		t.Fatalf("an unchanged config: %v", notApplied)
	}
}

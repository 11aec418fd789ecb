package web_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/web/ui/uitest"
)

// TestGrantEndingSoon: the API marks an active grant within ten minutes
// (notify.grant_ending_before's default) of its end, and only such a one,
// so the CLI and the web UI can say so.
func TestGrantEndingSoon(t *testing.T) {
	env := uitest.Start(t)
	x := &authzEnv{env: env, f: env.Seed(t, 0)}
	long := env.Grant(t, "alice", "demo-ssh", "ops", "bob") // 4h
	req, err := env.Access.Create(context.Background(), "alice", access.NewRequest{Target: "demo-ssh", Role: "ops",
		Duration: 5 * time.Minute, Reason: "INC-5 quick"})
	if err != nil {
		t.Fatal(err)
	}
	_, short, err := env.Access.Decide(context.Background(), "bob", req.ID, access.Decision{Approve: true})
	if err != nil {
		t.Fatal(err)
	}
	c := signIn(t, x, requester, false)
	soon := map[string]bool{}
	st, b := c.do(t, x, "GET", "/api/v1/grants", nil)
	if st != http.StatusOK {
		t.Fatalf("grants: %d %s", st, b)
	}
	var gs []struct {
		ID         string `json:"id"`
		EndingSoon bool   `json:"ending_soon"`
	}
	if err := json.Unmarshal(b, &gs); err != nil {
		t.Fatal(err)
	}
	for _, g := range gs {
		soon[g.ID] = g.EndingSoon
	}
	if !soon[short.ID] || soon[long.ID] {
		t.Fatalf("ending_soon: 5-minute grant %v, 4-hour grant %v", soon[short.ID], soon[long.ID])
	}
}

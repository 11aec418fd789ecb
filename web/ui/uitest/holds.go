package uitest

import (
	"context"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/holds"
)

// HoldStatement holds a statement of user's session on demo-pg/readonly,
// as the PostgreSQL proxy would, and returns its ID once it is pending.
// The hold waits until decided or the test ends.
func (e *Env) HoldStatement(tb testing.TB, user, text string) string {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	before := len(e.Holds.List())
	go e.Holds.Hold(ctx, holds.Request{Session: "ses_held_" + user, User: user, Target: "demo-pg", Role: "readonly",
		Database: "postgres", Text: text, Rules: []string{"delete_without_where (t)"}, Estimate: 42,
		Digest: "00", Timeout: time.Hour})
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if l := e.Holds.List(); len(l) > before && l[0].State == holds.Pending && l[0].Text == text {
			return l[0].ID
		}
		time.Sleep(5 * time.Millisecond)
	}
	tb.Fatal("hold not opened")
	return ""
}

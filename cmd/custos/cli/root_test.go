package cli

import (
	"testing"

	"github.com/spf13/cobra"
)

// TestEveryCommandHasAnExample: `--help` on every command a user can run
// shows an example.
func TestEveryCommandHasAnExample(t *testing.T) {
	var walk func(c *cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		if c.Runnable() && c.Name() != "help" && c.Name() != "completion" && c.Example == "" {
			t.Errorf("%q has no example", c.CommandPath())
		}
		n++
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRoot(&globals{}))
	if n < 20 {
		t.Fatalf("walked only %d commands", n)
	}
}

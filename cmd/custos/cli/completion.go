package cli

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// completer answers a shell's request for the first argument's
// candidates from the broker, with the saved profile and token. A broker
// that does not answer within a few seconds yields no candidates.
type completer func(ctx context.Context) ([]string, error)

func (g *globals) complete(list completer) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		ids, err := list(ctx)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
		}
		var out []cobra.Completion
		for _, id := range ids {
			if strings.HasPrefix(id, toComplete) {
				out = append(out, id)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeTargets completes the names of targets the caller may request,
// of kind when it is not empty.
func (g *globals) completeTargets(kind string) cobra.CompletionFunc {
	return g.complete(func(ctx context.Context) ([]string, error) {
		ts, err := g.listTargets(ctx)
		var out []string
		for _, t := range ts {
			if kind == "" || t.Kind == kind {
				out = append(out, t.Name)
			}
		}
		return out, err
	})
}

// completeIDs completes the "id" field of the objects a GET of path lists.
func (g *globals) completeIDs(path string) cobra.CompletionFunc {
	return g.complete(func(ctx context.Context) ([]string, error) {
		var objs []struct {
			ID string `json:"id"`
		}
		if err := g.call(ctx, "GET", path, nil, &objs); err != nil {
			return nil, err
		}
		out := make([]string, len(objs))
		for i, o := range objs {
			out[i] = o.ID
		}
		return out, nil
	})
}

// addCompletions gives the commands that take an ID or a target name
// their dynamic completion; cobra's completion command prints the
// scripts that call it.
func (g *globals) addCompletions(root *cobra.Command) {
	dynamic := map[string]cobra.CompletionFunc{
		"custos request":       g.completeTargets(""),
		"custos db connect":    g.completeTargets("postgres"),
		"custos db token":      g.completeTargets("postgres"),
		"custos db env":        g.completeTargets("postgres"),
		"custos db proxy":      g.completeTargets("postgres"),
		"custos approve":       g.completeIDs("/api/v1/requests?pending=true"),
		"custos deny":          g.completeIDs("/api/v1/requests?pending=true"),
		"custos cancel":        g.completeIDs("/api/v1/requests?mine=true"),
		"custos revoke":        g.completeIDs("/api/v1/grants?active=true"),
		"custos extend":        g.completeIDs("/api/v1/grants?active=true"),
		"custos verify":        g.completeIDs("/api/v1/sessions"),
		"custos export":        g.completeIDs("/api/v1/sessions"),
		"custos play":          g.completeIDs("/api/v1/sessions"),
		"custos sessions kill": g.completeIDs("/api/v1/sessions?state=live"),
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if f, ok := dynamic[c.CommandPath()]; ok && c.ValidArgsFunction == nil {
			c.ValidArgsFunction = f
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

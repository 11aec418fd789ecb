package cli

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/spf13/cobra"
)

// dbToken is the API's answer to POST /api/v1/db/token.
type dbToken struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	User      string    `json:"user"`
	Target    string    `json:"target"`
	GrantID   string    `json:"grant_id"`
	Host      string    `json:"host"`
	Port      string    `json:"port"`
	DBName    string    `json:"dbname"`
	SSLMode   string    `json:"sslmode"`
	Role      string    `json:"role"`
	// Options picks the role when one was asked for (-c custos.role=...).
	Options string `json:"options,omitempty"`
}

func (t dbToken) env() []string {
	env := []string{"PGHOST=" + t.Host, "PGPORT=" + t.Port, "PGUSER=" + t.User, "PGDATABASE=" + t.DBName,
		"PGPASSWORD=" + t.Token, "PGSSLMODE=" + t.SSLMode}
	if t.Options != "" {
		env = append(env, "PGOPTIONS="+t.Options)
	}
	return env
}

func newDBCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "db", Short: "Connect to PostgreSQL targets through the broker"}
	var role string
	cmd.PersistentFlags().StringVar(&role, "role", "", "connect as this role of the target, when you hold grants for several (default: the grant ending last)")
	fetch := func(cmd *cobra.Command, target string) (dbToken, error) {
		var t dbToken
		body := map[string]string{"target": target}
		if role != "" {
			body["role"] = role
		}
		if err := g.call(cmd.Context(), "POST", "/api/v1/db/token", body, &t); err != nil {
			return t, fmt.Errorf("db token: %w", err)
		}
		return t, nil
	}
	cmd.AddCommand(&cobra.Command{
		Use:     "token TARGET",
		Short:   "Print a short-lived connection token (the password for the PostgreSQL proxy)",
		Example: `  PGPASSWORD=$(custos db token demo-pg) psql "host=broker port=6432 dbname=demo-pg user=alice sslmode=require"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := fetch(cmd, args[0])
			if err != nil {
				return err
			}
			if j, _ := g.jsonOutput(); j {
				return g.printJSON(t)
			}
			fmt.Fprintln(g.stdout, t.Token)
			return nil
		},
	}, &cobra.Command{
		Use:     "env TARGET",
		Short:   "Print PG* environment exports for other PostgreSQL tools",
		Example: `  eval "$(custos db env demo-pg)" && pgbench -S -T 10`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := fetch(cmd, args[0])
			if err != nil {
				return err
			}
			for _, kv := range t.env() {
				fmt.Fprintf(g.stdout, "export %s\n", shellQuote(kv))
			}
			return nil
		},
	}, &cobra.Command{
		Use:   "connect TARGET [-- PSQL-ARGS...]",
		Short: "Run psql connected to the target through the broker",
		Example: `  custos db connect demo-pg
  custos db connect demo-pg --role readwrite
  custos db connect demo-pg -- -c 'select now()'`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := fetch(cmd, args[0])
			if err != nil {
				return err
			}
			psql := exec.CommandContext(cmd.Context(), "psql", args[1:]...)
			psql.Env = append(os.Environ(), t.env()...)
			psql.Stdin, psql.Stdout, psql.Stderr = g.stdin, g.stdout, g.stderr
			if err := psql.Run(); err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					return &exitError{code: ee.ExitCode()}
				}
				return fmt.Errorf("db connect: run psql: %w", err)
			}
			return nil
		},
	})
	cmd.AddCommand(newDBProxyCmd(g, fetch))
	return cmd
}

// shellQuote quotes NAME=value for POSIX shells.
func shellQuote(kv string) string {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			name, v := kv[:i], kv[i+1:]
			out := []byte(name + "='")
			for j := 0; j < len(v); j++ {
				if v[j] == '\'' {
					out = append(out, `'\''`...)
				} else {
					out = append(out, v[j])
				}
			}
			return string(append(out, '\''))
		}
	}
	return kv
}

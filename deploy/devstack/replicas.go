package devstack

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// replicaB is the second broker's process name (pid and log file) with
// UpOptions.Replicas 2.
const replicaB = "custos-b"

// storeDatabase is the database on the stack's PostgreSQL that holds the
// brokers' shared state store with two replicas.
const storeDatabase = "custos_store"

// storeEnv sets what the config template needs to name the broker's data
// dir and state store: CUSTOS_DATA_DIR, and CUSTOS_STORE, the store
// section. One broker uses SQLite in its data dir; two share a PostgreSQL
// store on the stack's PostgreSQL (created here), reached through
// CUSTOS_STORE_DSN in the brokers' environment, never in the config.
func storeEnv(o UpOptions, env map[string]string) error {
	env["CUSTOS_DATA_DIR"] = filepath.Join(o.Dir, "data")
	if o.Replicas < 2 {
		env["CUSTOS_STORE"] = fmt.Sprintf("{driver: sqlite, path: %q}", filepath.Join(o.Dir, "data", "custos.db"))
		delete(env, "CUSTOS_STORE_DSN")
		return nil
	}
	port, _ := strconv.Atoi(env["CUSTOS_TARGET_PG_PORT"])
	u := url.URL{Scheme: "postgres", User: url.UserPassword(pgSuperuser, env["CUSTOS_TARGET_PG_PASSWORD"]),
		Host: fmt.Sprintf("127.0.0.1:%d", port), RawQuery: "sslmode=disable"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	u.Path = "/postgres"
	c, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return fmt.Errorf("up: store database: %w", err)
	}
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", storeDatabase).Scan(&n); err != nil {
		return fmt.Errorf("up: store database: %w", err)
	}
	if n == 0 {
		if _, err := c.Exec(ctx, "CREATE DATABASE "+storeDatabase); err != nil {
			return fmt.Errorf("up: store database: %w", err)
		}
	}
	u.Path = "/" + storeDatabase
	env["CUSTOS_STORE_DSN"] = u.String()
	env["CUSTOS_STORE"] = "{driver: postgres, dsn: env:CUSTOS_STORE_DSN}"
	return nil
}

// replicaEnv is the second broker's view of env: its own listeners,
// URL, data dir and config file; everything else shared.
func replicaEnv(o UpOptions, env map[string]string) (map[string]string, error) {
	b := maps.Clone(env)
	running := pidAlive(o.Dir, replicaB) // and holding its ports
	for _, k := range []string{"CUSTOS_HTTP_PORT", "CUSTOS_SSH_PORT", "CUSTOS_PG_PORT"} {
		port, _ := strconv.Atoi(env[k+"_B"])
		if port == 0 || (!running && !portFree(port)) {
			var err error
			if port, err = freePort(); err != nil {
				return nil, err
			}
			env[k+"_B"] = strconv.Itoa(port)
		}
		b[k] = env[k+"_B"]
	}
	env["CUSTOS_URL_B"] = "https://127.0.0.1:" + env["CUSTOS_HTTP_PORT_B"]
	b["CUSTOS_URL"] = env["CUSTOS_URL_B"]
	b["CUSTOS_DATA_DIR"] = filepath.Join(o.Dir, "data-b")
	b["CUSTOS_CONFIG"] = filepath.Join(o.Dir, "custos-b.yaml")
	return b, nil
}

// sharedKeys are the files in a broker's data dir that every replica
// must have the same copy of (docs/operations.md, "Keys every replica
// must share").
var sharedKeys = []string{"recording-signing.key", "ssh_user_ca", "ssh_host_ed25519_key"}

// startReplicaB starts the second broker when o.Replicas is 2, after
// copying the first one's keys into its data dir, and stops it
// otherwise. Its ports stay in .dev/env (CUSTOS_*_PORT_B) for the next up.
func startReplicaB(o UpOptions, env map[string]string, infraRestarted bool) error {
	if o.Replicas < 2 {
		if pidAlive(o.Dir, replicaB) {
			fmt.Fprintf(o.Out, "up: stopping %s (REPLICAS is 1)\n", replicaB)
		}
		stopPid(o.Dir, replicaB)
		return nil
	}
	b, err := replicaEnv(o, env)
	if err != nil {
		return err
	}
	if err := writeEnvFile(filepath.Join(o.Dir, "env"), env); err != nil {
		return err
	}
	if err := os.MkdirAll(b["CUSTOS_DATA_DIR"], 0o700); err != nil {
		return fmt.Errorf("up: %s: %w", replicaB, err)
	}
	for _, k := range sharedKeys {
		dst := filepath.Join(b["CUSTOS_DATA_DIR"], k)
		if exists(dst) {
			continue
		}
		key, err := os.ReadFile(filepath.Join(env["CUSTOS_DATA_DIR"], k))
		if err != nil {
			return fmt.Errorf("up: %s: shared key: %w", replicaB, err)
		}
		if err := writeFileAtomic(dst, key, 0o600); err != nil {
			return fmt.Errorf("up: %s: shared key: %w", replicaB, err)
		}
	}
	if err := renderConfig(o.ConfigTemplate, b["CUSTOS_CONFIG"], b); err != nil {
		return err
	}
	return startCustos(o, b, replicaB, infraRestarted)
}

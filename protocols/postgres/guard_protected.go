package pgproxy

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/protocols/postgres/guard"
	"github.com/custos-pam/custos/protocols/postgres/masking"
)

// Tables with classified columns (docs/data-protection.md): the
// guardrails' protected_ddl and bulk_export rules protect the tables the
// data dictionary classifies a column of, besides the role's explicit
// protected_tables. Column patterns are globs (*.*.subject_id), so the
// set is resolved against the target's catalog: at a guarded session's
// login, over a connection of its own with the session's login, and kept
// for protectedTTL per target and database so a burst of logins costs one
// lookup. If the lookup fails the session treats every table as protected
// (fail closed).

// protectedTTL is how long a resolved set of tables is reused.
const protectedTTL = time.Minute

// protectedQuery lists the columns of the relations a statement can name.
const protectedQuery = `select n.nspname, c.relname, a.attname
from pg_catalog.pg_attribute a
join pg_catalog.pg_class c on c.oid = a.attrelid
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'p', 'f', 'v', 'm') and a.attnum > 0 and not a.attisdropped
and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_(toast|temp_)'`

// protectedCache holds resolved sets by target and database.
type protectedCache struct {
	mu sync.Mutex
	m  map[string]protectedSet
}

type protectedSet struct {
	tables []string
	at     time.Time
}

// classifiedTables returns the tables ("schema.table") with a column the
// dictionary classifies, from the cache while fresh.
func (c *protectedCache) classifiedTables(ctx context.Context, d *masking.Dictionary, key string,
	connect func(context.Context) (*pgconn.PgConn, error)) ([]string, error) {
	c.mu.Lock()
	if e, ok := c.m[key]; ok && time.Since(e.at) < protectedTTL {
		c.mu.Unlock()
		return e.tables, nil
	}
	c.mu.Unlock()
	tables, err := lookupClassifiedTables(ctx, d, connect)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]protectedSet{}
	}
	c.m[key] = protectedSet{tables: tables, at: time.Now()}
	c.mu.Unlock()
	return tables, nil
}

func lookupClassifiedTables(ctx context.Context, d *masking.Dictionary, connect func(context.Context) (*pgconn.PgConn, error)) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, catalogTimeout)
	defer cancel()
	conn, err := connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("classified tables: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	res := conn.ExecParams(ctx, protectedQuery, nil, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, fmt.Errorf("classified tables: %s", upstreamErrText(res.Err))
	}
	seen := map[string]bool{}
	var out []string
	for _, r := range res.Rows {
		if len(r) != 3 {
			continue
		}
		col := masking.Column{Schema: string(r[0]), Table: string(r[1]), Name: string(r[2])}
		k := col.Schema + "." + col.Table
		if seen[k] || d.Classify(col) == "" {
			continue
		}
		seen[k] = true
		out = append(out, k)
	}
	slices.Sort(out)
	return out, nil
}

// guardClassifier is the role's statement classifier: its explicit
// protected_tables and, with a data dictionary that names columns, the
// target's tables with classified columns. note is set when the latter
// could not be resolved and every table is treated as protected.
func (p *Proxy) guardClassifier(ctx context.Context, t *config.Target, g *config.Guardrails, db, user, password string) (c *guard.Classifier, note string) {
	c = guard.New(g.ProtectedTables)
	d := p.opts.DataDictionary
	if !d.HasColumnPatterns() {
		return c, ""
	}
	tables, err := p.protected.classifiedTables(ctx, d, t.Name+"\x00"+db, func(ctx context.Context) (*pgconn.PgConn, error) {
		cfg, err := upstreamConfig(t, db, user, password, map[string]string{"application_name": "custos guardrail catalog"})
		if err != nil {
			return nil, err
		}
		return pgconn.ConnectConfig(ctx, cfg)
	})
	if err != nil {
		p.Log().Warn("postgres guardrail: tables with classified columns unresolved; every table is protected", "target", t.Name, "err", err)
		return c.AllTables(), "tables with classified columns could not be resolved (" + err.Error() + "); every table counts as protected"
	}
	return c.WithTables(tables), ""
}

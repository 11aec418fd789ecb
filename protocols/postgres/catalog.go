package pgproxy

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/custos-pam/custos/protocols/postgres/masking"
)

// catalogTimeout bounds one catalog lookup; a lookup that fails leaves
// its columns unresolved (the role's unknown action applies).
const catalogTimeout = 5 * time.Second

// catalogQuery resolves table OIDs to their columns' schema, table and
// column names. Views and materialized views are marked derived.
const catalogQuery = `select c.oid::int8, a.attnum::int4, n.nspname, c.relname, a.attname, c.relkind::text
from pg_catalog.pg_attribute a
join pg_catalog.pg_class c on c.oid = a.attrelid
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where a.attrelid = any($1::oid[]) and a.attnum > 0 and not a.attisdropped`

// colKey names a result column by its table OID and attribute number.
type colKey struct {
	table  uint32
	attnum int16
}

// catalog resolves result columns over a second connection to the target
// with the session's own login, so a lookup never interleaves with the
// client's protocol on the session's connection. It caches per session.
// Only the server copier's goroutine uses it.
type catalog struct {
	// connect opens the lookup connection; nil after it failed once.
	connect func(ctx context.Context) (*pgconn.PgConn, error)
	conn    *pgconn.PgConn
	cols    map[colKey]*masking.Column
	// looked holds the table OIDs already looked up, found or not.
	looked map[uint32]bool
	// failed is set once a lookup failed; later lookups are not tried.
	failed bool
}

// resolve looks the table OIDs not yet seen up; on failure they stay
// unresolved.
func (c *catalog) resolve(ctx context.Context, tables []uint32) error {
	var missing []string
	for _, t := range tables {
		if t != 0 && !c.looked[t] {
			c.looked[t] = true
			missing = append(missing, strconv.FormatUint(uint64(t), 10))
		}
	}
	if len(missing) == 0 || c.failed {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, catalogTimeout)
	defer cancel()
	if c.conn == nil {
		conn, err := c.connect(ctx)
		if err != nil {
			c.failed = true
			return fmt.Errorf("catalog connection: %w", err)
		}
		c.conn = conn
	}
	res := c.conn.ExecParams(ctx, catalogQuery, [][]byte{[]byte("{" + strings.Join(missing, ",") + "}")}, nil, nil, nil).Read()
	if res.Err != nil {
		c.failed = true
		return fmt.Errorf("catalog lookup: %w", res.Err)
	}
	for _, r := range res.Rows {
		if len(r) != 6 {
			continue
		}
		oid, err1 := strconv.ParseUint(string(r[0]), 10, 32)
		att, err2 := strconv.ParseInt(string(r[1]), 10, 16)
		if err1 != nil || err2 != nil {
			continue
		}
		kind := string(r[5])
		c.cols[colKey{uint32(oid), int16(att)}] = &masking.Column{Schema: string(r[2]), Table: string(r[3]), Name: string(r[4]),
			Derived: kind != "r" && kind != "p" && kind != "f"}
	}
	return nil
}

func (c *catalog) close() {
	if c.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), closeGrace)
		defer cancel()
		c.conn.Close(ctx)
	}
}

// Package sqlstore implements broker.Tx once, in SQL both SQLite and
// PostgreSQL accept, over a tiny connection interface each driver adapts:
// entity rows with indexed filter columns and a JSON data column, the
// hash-chained audit append, schema migrations and the in-process fan-out
// of grant events. The drivers own connections, transaction boundaries
// and locking; this package owns what the rows look like.
package sqlstore

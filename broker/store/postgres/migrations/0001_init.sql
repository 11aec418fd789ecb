-- Custos state store, PostgreSQL. Times are TEXT in UTC, fixed-width
-- RFC 3339 with nanoseconds (timestamptz keeps only microseconds),
-- collated "C" so text order is time order whatever the database's
-- default collation. data holds the whole object as JSON; the other
-- columns exist for filtering.

CREATE TABLE requests (
	id         TEXT PRIMARY KEY,
	user_name  TEXT NOT NULL,
	target     TEXT NOT NULL,
	state      TEXT NOT NULL,
	created_at TEXT COLLATE "C" NOT NULL,
	expires_at TEXT COLLATE "C" NOT NULL,
	data       TEXT NOT NULL
);
CREATE INDEX requests_user ON requests (user_name, created_at);
CREATE INDEX requests_target ON requests (target, created_at);
CREATE INDEX requests_state ON requests (state, expires_at);
CREATE INDEX requests_created ON requests (created_at);
CREATE INDEX requests_expires ON requests (expires_at);

CREATE TABLE grants (
	id            TEXT PRIMARY KEY,
	request_id    TEXT NOT NULL,
	user_name     TEXT NOT NULL,
	target        TEXT NOT NULL,
	role          TEXT NOT NULL,
	state         TEXT NOT NULL,
	starts_at     TEXT COLLATE "C" NOT NULL,
	ends_at       TEXT COLLATE "C" NOT NULL,
	effective_end TEXT COLLATE "C" NOT NULL,
	data          TEXT NOT NULL
);
CREATE INDEX grants_user ON grants (user_name, starts_at);
CREATE INDEX grants_target ON grants (target, starts_at);
CREATE INDEX grants_role ON grants (role);
CREATE INDEX grants_request ON grants (request_id);
CREATE INDEX grants_state ON grants (state, ends_at);
CREATE INDEX grants_starts ON grants (starts_at);
CREATE INDEX grants_ends ON grants (ends_at);
CREATE INDEX grants_effective_end ON grants (effective_end);

CREATE TABLE tokens (
	id         TEXT PRIMARY KEY,
	hash       TEXT NOT NULL UNIQUE,
	user_name  TEXT NOT NULL,
	kind       TEXT NOT NULL,
	target     TEXT NOT NULL,
	created_at TEXT COLLATE "C" NOT NULL,
	expires_at TEXT COLLATE "C" NOT NULL,
	data       TEXT NOT NULL
);
CREATE INDEX tokens_user ON tokens (user_name, created_at);
CREATE INDEX tokens_expires ON tokens (expires_at);

CREATE TABLE sessions (
	id          TEXT PRIMARY KEY,
	grant_id    TEXT NOT NULL,
	user_name   TEXT NOT NULL,
	target      TEXT NOT NULL,
	role        TEXT NOT NULL,
	protocol    TEXT NOT NULL,
	state       TEXT NOT NULL,
	started_at  TEXT COLLATE "C" NOT NULL,
	index_text  TEXT NOT NULL,
	search_text TEXT NOT NULL,
	data        TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_name, started_at);
CREATE INDEX sessions_target ON sessions (target, started_at);
CREATE INDEX sessions_protocol ON sessions (protocol);
CREATE INDEX sessions_grant ON sessions (grant_id);
CREATE INDEX sessions_state ON sessions (state);
CREATE INDEX sessions_started ON sessions (started_at);

-- The audit log: append-only and hash-chained. Appends are serialized by
-- a transaction-scoped advisory lock; the seq primary key backs it up.
-- The triggers stop accidental edits, the hash chain detects deliberate
-- ones. details is TEXT, not jsonb: its bytes are hashed and must come
-- back exactly as written.
CREATE TABLE audit (
	seq       BIGINT PRIMARY KEY,
	id        TEXT NOT NULL UNIQUE,
	time      TEXT COLLATE "C" NOT NULL,
	actor     TEXT NOT NULL,
	action    TEXT NOT NULL,
	target    TEXT NOT NULL,
	outcome   TEXT NOT NULL,
	reason    TEXT NOT NULL,
	trace_id  TEXT NOT NULL,
	details   TEXT NOT NULL,
	prev_hash TEXT NOT NULL,
	hash      TEXT NOT NULL
);
CREATE INDEX audit_actor ON audit (actor, seq);
CREATE INDEX audit_target ON audit (target, seq);
CREATE INDEX audit_action ON audit (action);
CREATE INDEX audit_time ON audit (time);
CREATE INDEX audit_trace ON audit (trace_id);

CREATE FUNCTION custos_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'audit log is append-only';
END
$$;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
	FOR EACH ROW EXECUTE FUNCTION custos_audit_append_only();
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
	FOR EACH ROW EXECUTE FUNCTION custos_audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
	FOR EACH STATEMENT EXECUTE FUNCTION custos_audit_append_only();

CREATE TABLE state (
	key        TEXT PRIMARY KEY,
	value      BYTEA NOT NULL,
	updated_at TEXT COLLATE "C" NOT NULL
);

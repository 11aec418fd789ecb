-- Rate-limit state every broker on the store shares: failed sign-in
-- counts and the audit throttle's per-source tallies. Rows are small JSON
-- documents by key; expires_at (fixed-width UTC text, collated "C") says
-- when a row no longer matters and may be deleted.
CREATE TABLE limits (
	key        TEXT PRIMARY KEY,
	value      BYTEA NOT NULL,
	expires_at TEXT COLLATE "C" NOT NULL
);
CREATE INDEX limits_expires ON limits (expires_at);

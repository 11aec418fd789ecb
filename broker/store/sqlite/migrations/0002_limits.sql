-- Rate-limit state: failed sign-in counts and the audit throttle's
-- per-source tallies, so they survive a restart. Rows are small JSON
-- documents by key; expires_at (fixed-width UTC text) says when a row no
-- longer matters and may be deleted.
CREATE TABLE limits (
	key        TEXT PRIMARY KEY,
	value      BLOB NOT NULL,
	expires_at TEXT NOT NULL
);
CREATE INDEX limits_expires ON limits (expires_at);

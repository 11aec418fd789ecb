-- A trigram index over sessions.search_text, so searching session
-- content for a rare string does not read every session. sessions_fts is
-- an FTS5 table whose content is the sessions table itself (it stores
-- only the index); the triggers keep it in step with every insert,
-- update and delete. case_sensitive 1: search_text is already folded to
-- lower case by the broker, and GLOB (which ListSessions uses) can use a
-- case-sensitive trigram index.
CREATE VIRTUAL TABLE sessions_fts USING fts5(
	search_text,
	content = 'sessions',
	content_rowid = 'rowid',
	tokenize = 'trigram case_sensitive 1',
	detail = 'none'
);
CREATE TRIGGER sessions_fts_insert AFTER INSERT ON sessions BEGIN
	INSERT INTO sessions_fts (rowid, search_text) VALUES (new.rowid, new.search_text);
END;
CREATE TRIGGER sessions_fts_delete AFTER DELETE ON sessions BEGIN
	INSERT INTO sessions_fts (sessions_fts, rowid, search_text) VALUES ('delete', old.rowid, old.search_text);
END;
CREATE TRIGGER sessions_fts_update AFTER UPDATE OF search_text ON sessions BEGIN
	INSERT INTO sessions_fts (sessions_fts, rowid, search_text) VALUES ('delete', old.rowid, old.search_text);
	INSERT INTO sessions_fts (rowid, search_text) VALUES (new.rowid, new.search_text);
END;
INSERT INTO sessions_fts (sessions_fts) VALUES ('rebuild');

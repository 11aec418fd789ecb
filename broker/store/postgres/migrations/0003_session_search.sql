-- A trigram index over sessions.search_text, so searching session
-- content for a rare string does not read every session. pg_trgm ships
-- with PostgreSQL's contrib modules and is a trusted extension (the
-- database owner may create it). Where it is not installed, or the
-- broker's role may not create it, the store works as before with a
-- sequential scan, and the server log says why (a NOTICE); install
-- pg_trgm and run CREATE EXTENSION pg_trgm and the CREATE INDEX below by
-- hand to add the index later (docs/operations.md).
DO $$
BEGIN
	IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
		BEGIN
			CREATE EXTENSION IF NOT EXISTS pg_trgm;
			CREATE INDEX sessions_search_trgm ON sessions USING gin (search_text gin_trgm_ops);
		EXCEPTION WHEN insufficient_privilege THEN
			RAISE NOTICE 'custos: pg_trgm not created (%); session search by content scans the sessions table', SQLERRM;
		END;
	ELSE
		RAISE NOTICE 'custos: pg_trgm is not available; session search by content scans the sessions table';
	END IF;
END
$$;

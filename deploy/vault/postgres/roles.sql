-- The stable roles behind Vault's dynamic roles readonly and readwrite. Each
-- holds its Vault role's privileges and owns what that role's logins create:
-- every ephemeral login is a member and runs as it (creation statements), so
-- a table created under one grant can be altered and dropped under the next.
-- NOLOGIN: nobody connects as them. Safe to run again.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'custos_readonly') THEN
    CREATE ROLE custos_readonly WITH NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'custos_readwrite') THEN
    CREATE ROLE custos_readwrite WITH NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
  END IF;
END
$$;
GRANT pg_read_all_data TO custos_readonly;
GRANT pg_read_all_data, pg_write_all_data TO custos_readwrite;
GRANT CREATE ON SCHEMA public TO custos_readwrite;

-- The break-glass login Vault's static role "breakglass" manages. Vault sets
-- and rotates its password; nobody else knows it. Safe to run again.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'custos_breakglass') THEN
    CREATE ROLE custos_breakglass WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
  END IF;
END
$$;
GRANT pg_read_all_data, pg_write_all_data TO custos_breakglass;

CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
GRANT pg_read_all_data, pg_write_all_data TO "{{name}}";
GRANT CREATE ON SCHEMA public TO "{{name}}";

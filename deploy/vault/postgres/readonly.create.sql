CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION IN ROLE custos_readonly;
ALTER ROLE "{{name}}" SET role = 'custos_readonly';

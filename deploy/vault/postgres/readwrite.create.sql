CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION IN ROLE custos_readwrite;
ALTER ROLE "{{name}}" SET role = 'custos_readwrite';

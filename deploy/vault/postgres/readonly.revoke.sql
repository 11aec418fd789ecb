ALTER ROLE "{{name}}" NOLOGIN;
SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = '{{name}}';
REASSIGN OWNED BY "{{name}}" TO custos_readonly;
DROP OWNED BY "{{name}}";
DROP ROLE IF EXISTS "{{name}}";

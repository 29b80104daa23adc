-- Run once by the postgres image's entrypoint, in POSTGRES_DB, when the volume is created.
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
CREATE EXTENSION IF NOT EXISTS hypopg;
-- A non-superuser audit role, as the README recommends for production replicas.
CREATE ROLE auditor LOGIN PASSWORD 'auditor';
GRANT pg_monitor TO auditor;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO auditor;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO auditor;

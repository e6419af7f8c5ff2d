#!/usr/bin/env bash
# PostgreSQL roles for NeoPain (docker compose mounts this into /docker-entrypoint-initdb.d; it runs
# once, when the data volume is first initialised, as the image's superuser).
#   neopain_owner  owns the database and every table; `manage.py migrate` runs as it.
#   neopain_app    web, workers and beat connect as it: it owns nothing, and may only SELECT and
#                  INSERT audit rows (`migrate` grants it, NEOPAIN_DB_APP_ROLE; triage/dbroles.py),
#                  so it cannot disable the append-only trigger or change history.
# An existing volume: run it by hand once, e.g.
#   docker compose exec -e POSTGRES_OWNER_PASSWORD -e POSTGRES_APP_PASSWORD postgres \
#     bash /docker-entrypoint-initdb.d/10-neopain-roles.sh
# then move the tables to the owner (ALTER TABLE ... OWNER TO neopain_owner) and re-run migrate.
set -euo pipefail
: "${POSTGRES_OWNER_PASSWORD:?set POSTGRES_OWNER_PASSWORD}"
: "${POSTGRES_APP_PASSWORD:?set POSTGRES_APP_PASSWORD}"
db="${NEOPAIN_DB_NAME:-neopain}"

psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    -v owner_pw="$POSTGRES_OWNER_PASSWORD" -v app_pw="$POSTGRES_APP_PASSWORD" -v db="$db" <<'SQL'
SELECT format('CREATE ROLE neopain_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %L', :'owner_pw')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'neopain_owner') \gexec
SELECT format('CREATE ROLE neopain_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD %L', :'app_pw')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'neopain_app') \gexec
SELECT format('CREATE DATABASE %I OWNER neopain_owner', :'db')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SELECT format('ALTER DATABASE %I OWNER TO neopain_owner', :'db') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'db') \gexec
SELECT format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO neopain_app', :'db') \gexec
SQL

psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "$db" <<'SQL'
-- PostgreSQL 15+: public belongs to the database owner; nobody else creates objects in it.
ALTER SCHEMA public OWNER TO neopain_owner;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO neopain_app;
SQL

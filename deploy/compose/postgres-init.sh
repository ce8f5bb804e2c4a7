#!/bin/sh
# Runs once, when the postgres container of compose.yaml initialises an empty data volume
# (/docker-entrypoint-initdb.d), as the superuser: the roles and databases the other services use, with the
# passwords of deploy/compose/make-secrets.sh (mounted as compose secrets).
#
#   deskpilot_owner  owns the deskpilot database and its tables; only the migrate job logs in as it
#                    (DESKPILOT_MIGRATION_DATABASE_URL)
#   deskpilot_app    the replicas' and jobs' role (DESKPILOT_DATABASE_URL): CONNECT here, table rights from
#                    `deskpilot store migrate` (INSERT and SELECT on the audit log, no DDL)
#   mlflow           owns the mlflow database (the tracking server's backend store)
#
# Changing a password later is ALTER ROLE ... PASSWORD, then the matching secret files: this script does not
# run again on an initialised volume.
set -eu

secrets_dir=${SECRETS_DIR:-/run/secrets}
secret() {
    cat "$secrets_dir/$1"
}

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    -v owner_password="$(secret deskpilot_owner_password)" \
    -v app_password="$(secret deskpilot_app_password)" \
    -v mlflow_password="$(secret mlflow_db_password)" <<'SQL'
CREATE ROLE deskpilot_owner LOGIN PASSWORD :'owner_password';
CREATE ROLE deskpilot_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'app_password';
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE deskpilot OWNER deskpilot_owner;
CREATE DATABASE mlflow OWNER mlflow;
REVOKE ALL ON DATABASE deskpilot FROM PUBLIC;
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;
GRANT CONNECT ON DATABASE deskpilot TO deskpilot_app;
\connect deskpilot
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO deskpilot_app;
SQL

#!/bin/sh
# Runs once, when the postgres container of compose.yaml initialises an empty data volume
# (/docker-entrypoint-initdb.d), as the superuser: the roles and databases the other services use, with the
# passwords of deploy/compose/make-secrets.sh (mounted as compose secrets).
#
#   deskpilot_owner  owns the deskpilot database and its tables; only the migrate and backup jobs log in as it
#                    (DESKPILOT_MIGRATION_DATABASE_URL)
#   deskpilot_app    the replicas' and jobs' role (DESKPILOT_DATABASE_URL): CONNECT here, table rights from
#                    `deskpilot store migrate` (INSERT and SELECT on the audit log, no DDL)
#   mlflow           owns the mlflow database (the tracking server's backend store)
#
# Changing a password later is ALTER ROLE ... PASSWORD, then the matching secret files: this script does not
# run again on an initialised volume.
set -eu

# The passwords never reach a command line (where `ps` would show them): psql reads each file itself, with
# `\set NAME `cat FILE``, and only the folder's name is passed in. psql drops the file's trailing newline.
secrets_dir=${SECRETS_DIR:-/run/secrets}

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    -v secrets_dir="$secrets_dir" <<'SQL'
\set owner_password `cat :'secrets_dir'/deskpilot_owner_password`
\set app_password `cat :'secrets_dir'/deskpilot_app_password`
\set mlflow_password `cat :'secrets_dir'/mlflow_db_password`
CREATE ROLE deskpilot_owner LOGIN PASSWORD :'owner_password';
CREATE ROLE deskpilot_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'app_password';
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
\unset owner_password
\unset app_password
\unset mlflow_password
CREATE DATABASE deskpilot OWNER deskpilot_owner;
CREATE DATABASE mlflow OWNER mlflow;
REVOKE ALL ON DATABASE deskpilot FROM PUBLIC;
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;
GRANT CONNECT ON DATABASE deskpilot TO deskpilot_app;
\connect deskpilot
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO deskpilot_app;
SQL

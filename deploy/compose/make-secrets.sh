#!/bin/sh
# Creates the secret files compose.yaml mounts, with random values, in deploy/compose/secrets/ (or the folder
# given as the first argument). A file that exists is kept, so running it again changes nothing; the database
# URLs are built from the password files, so the two always agree. Nothing here is committed
# (deploy/compose/secrets/.gitignore).
#
#   postgres_password                   the PostgreSQL superuser (the postgres container only)
#   deskpilot_owner_password            the owner of the store's tables       } read by postgres-init.sh when
#   deskpilot_app_password              the service's runtime role            } the data volume is created
#   mlflow_db_password                  the tracking server's role            }
#   DESKPILOT_MIGRATION_DATABASE_URL    the owner's URL: the migrate and backup jobs only
#   DESKPILOT_DATABASE_URL              the runtime role's URL: replicas and jobs
#   MLFLOW_BACKEND_STORE_URI            the tracking server's backend store
#   DESKPILOT_AUDIT_KEY                 the audit chain's HMAC key (back it up with the database, not in it)
#   DESKPILOT_OPS_KEY                   the operator key: /readyz shows its reasons to it
#
# The upper-case files become environment variables of the same name in the containers (the entrypoint
# reads /run/secrets). Compose bind-mounts them with the host file's owner and mode, so the files are 0644
# for the containers' unprivileged users to read, and the folder is 0700 so that no other account on the
# host can reach them.
set -eu

dir=${1:-$(dirname "$0")/secrets}
mkdir -p "$dir"
chmod 700 "$dir"

random_hex() {
    od -An -v -tx1 -N"$1" /dev/urandom | tr -d ' \n'
}

put() {
    if [ -e "$dir/$1" ]; then
        echo "kept  $dir/$1"
        return
    fi
    (umask 077 && printf '%s\n' "$2" >"$dir/$1")
    chmod 644 "$dir/$1"
    echo "wrote $dir/$1"
}

value() {
    cat "$dir/$1"
}

for name in postgres_password deskpilot_owner_password deskpilot_app_password mlflow_db_password; do
    put "$name" "$(random_hex 24)"
done
put DESKPILOT_MIGRATION_DATABASE_URL \
    "postgresql+psycopg://deskpilot_owner:$(value deskpilot_owner_password)@postgres:5432/deskpilot"
put DESKPILOT_DATABASE_URL \
    "postgresql+psycopg://deskpilot_app:$(value deskpilot_app_password)@postgres:5432/deskpilot"
put MLFLOW_BACKEND_STORE_URI \
    "postgresql+psycopg://mlflow:$(value mlflow_db_password)@postgres:5432/mlflow"
put DESKPILOT_AUDIT_KEY "$(random_hex 32)"
put DESKPILOT_OPS_KEY "$(random_hex 24)"

#!/bin/sh
# The DeskPilot images' entrypoint (POSIX sh).
#
#   (no arguments), serve [OPTION...]  deskpilot serve --host "${HOST:-0.0.0.0}" --port "${PORT:-8000}" [OPTION...]
#   migrate [OPTION...]                deskpilot store migrate [OPTION...]
#   COMMAND... (a deskpilot command)   deskpilot COMMAND...   (monitor, retrain --from-feedback, keys create, ...)
#   -OPTION... (a deskpilot option)    deskpilot -OPTION...   (--help, --version)
#   anything else                      run as given           (mlflow server ..., python, sh)
#
# Before that it refuses to run as root (exit 77), and turns secret files into environment variables: every
# file in $DESKPILOT_SECRETS_DIR (default /run/secrets, where compose mounts secrets) whose name is an
# upper-case variable name (DESKPILOT_DATABASE_URL, DESKPILOT_AUDIT_KEY, MLFLOW_BACKEND_STORE_URI) becomes
# that variable, so that credentials stay out of compose.yaml and `docker inspect`. Files with other names
# (postgres_password) are left alone. A variable given both ways is a configuration error (exit 78): one
# source of truth. The command is exec'd, so it runs as PID 1 and receives the container's signals itself.
set -eu

fail() {
    printf 'deskpilot-entrypoint: %s\n' "$2" >&2
    exit "$1"
}

if [ "$(id -u)" = 0 ]; then
    fail 77 "refusing to run as root: run the container as its deskpilot user (the image's USER), \
or pass --user UID:GID of an unprivileged account that can write DESKPILOT_HOME"
fi

secrets_dir=${DESKPILOT_SECRETS_DIR:-/run/secrets}
if [ -d "$secrets_dir" ]; then
    for file in "$secrets_dir"/*; do
        [ -f "$file" ] || continue
        name=${file##*/}
        case $name in
            [!ABCDEFGHIJKLMNOPQRSTUVWXYZ]* | *[!ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_]*) continue ;;
        esac
        # $name is [A-Z][A-Z0-9_]* here, so eval sees nothing but a variable name.
        if eval "[ -n \"\${$name+set}\" ]"; then
            fail 78 "$name is set in the environment and in $file: keep one of the two"
        fi
        value=$(cat "$file") || fail 78 "cannot read the secret $file"
        export "$name=$value"
    done
fi

if [ "$#" -eq 0 ]; then
    set -- serve
fi

case $1 in
    serve | console)
        command=$1
        shift
        exec deskpilot "$command" --host "${HOST:-0.0.0.0}" --port "${PORT:-8000}" "$@"
        ;;
    migrate)
        shift
        exec deskpilot store migrate "$@"
        ;;
    validate | redact | data | train | evaluate | gate | predict | demo | promote | rollback | snapshot | \
        models | keys | store | audit | rollout | monitor | feedback | retrain | kb | -*)
        exec deskpilot "$@"
        ;;
    *)
        exec "$@"
        ;;
esac

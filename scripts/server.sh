#!/usr/bin/env bash
# A team tracking server: PostgreSQL on 127.0.0.1 (databases `mlflow` and `optuna`) and `mlflow server`
# on it, serving its own artifact store. Runs then use tracking=server; Optuna sweeps hydra/sweeper=optuna_server.
#   scripts/server.sh start | stop | status | purge (stop, then delete the databases and artifacts)
# Settings (environment): SERVER_DIR (default outputs/server: artifacts, logs, the database password and the
# .pgpass file clients read it from),
# PG_PORT (5433), MLFLOW_PORT (5050), MLFLOW_HOST (127.0.0.1; put a shared server behind basic auth: README).
set -euo pipefail
cd "$(dirname "$0")/.."
action=${1:-start}
dir=$(realpath -m "${SERVER_DIR:-outputs/server}")
pg_port=${PG_PORT:-5433}
mlflow_port=${MLFLOW_PORT:-5050}
mlflow_host=${MLFLOW_HOST:-127.0.0.1}
mkdir -p "$dir"

pg_bin() { find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1; }
if [ -z "$(pg_bin)" ]; then
    [ "$(id -u)" = 0 ] || { echo "error: PostgreSQL is not installed (as root: apt-get install postgresql)" >&2; exit 1; }
    echo "server: installing PostgreSQL (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
bin=$(pg_bin)

# PostgreSQL refuses to run as root: then it runs as the `postgres` user, with its data where that user can write.
# Each server folder gets its own new data folder, named in the server folder: data left behind by a deleted
# server folder of the same path holds a password nobody has any more, and must never be picked up again.
if [ "$(id -u)" = 0 ]; then
    if [ ! -s "$dir/pg_home" ]; then
        mkdir -p /var/lib/postgresql/pipeline
        mktemp -d /var/lib/postgresql/pipeline/XXXXXXXXXXXX > "$dir/pg_home"
    fi
    pg_home=$(cat "$dir/pg_home")
    as_db_owner() { runuser -u postgres -- "$@"; }
else
    pg_home=$dir
    as_db_owner() { "$@"; }
fi
pgdata=$pg_home/pgdata
password_file=$dir/db-password
if [ ! -s "$password_file" ]; then
    (umask 077 && head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' > "$password_file")
fi
# Clients find the password in a .pgpass file (mode 600), never in a URL or on a command line (`ps` shows those)
export PGPASSFILE=$dir/pgpass
(umask 077 && echo "127.0.0.1:$pg_port:*:postgres:$(cat "$password_file")" > "$PGPASSFILE")
db_url() { echo "postgresql://postgres@127.0.0.1:$pg_port/$1"; }

stop() {
    if [ -f "$dir/mlflow.pid" ]; then
        kill -TERM -- "-$(cat "$dir/mlflow.pid")" 2>/dev/null || true
        rm -f "$dir/mlflow.pid"
    fi
    if [ -f "$pgdata/postmaster.pid" ]; then
        as_db_owner "$bin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null
    fi
    echo "server: stopped"
}

start() {
    if [ ! -f "$pgdata/PG_VERSION" ]; then
        mkdir -p "$pgdata"
        pwfile=$(mktemp)
        cp "$password_file" "$pwfile"
        if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$pg_home" "$pwfile"; fi
        as_db_owner "$bin/initdb" -D "$pgdata" -U postgres --auth=scram-sha-256 --pwfile="$pwfile" >"$dir/initdb.log"
        rm -f "$pwfile"
    fi
    if [ ! -f "$pgdata/postmaster.pid" ]; then
        as_db_owner "$bin/pg_ctl" -D "$pgdata" -l "$pg_home/postgres.log" -w \
            -o "-c listen_addresses=127.0.0.1 -p $pg_port -c unix_socket_directories=/tmp" start >/dev/null
    fi
    for database in mlflow optuna; do
        if ! "$bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -tAc \
            "select 1 from pg_database where datname = '$database'" | grep -q 1; then
            "$bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres "$database"
        fi
    done
    if [ ! -f "$dir/mlflow.pid" ] || ! kill -0 "$(cat "$dir/mlflow.pid")" 2>/dev/null; then
        # MLflow's job execution (GenAI scorers, trace roll-ups: nothing this pipeline uses) adds 8 polling
        # processes that keep most of a core busy while the server idles: off unless asked for (docs/dependencies.md)
        export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}
        setsid .venv/bin/mlflow server --backend-store-uri "$(db_url mlflow)" --artifacts-destination "$dir/artifacts" \
            --host "$mlflow_host" --port "$mlflow_port" --workers 2 >"$dir/mlflow.log" 2>&1 &
        echo $! > "$dir/mlflow.pid"
    fi
    for _ in $(seq 120); do
        if curl -sf "http://127.0.0.1:$mlflow_port/health" >/dev/null; then
            echo "server: MLflow at http://$mlflow_host:$mlflow_port on PostgreSQL 127.0.0.1:$pg_port"
            echo "  runs:   pipeline-train tracking=server   (or tracking.uri=http://$mlflow_host:$mlflow_port)"
            echo "  optuna: export PGPASSFILE=$PGPASSFILE PIPELINE_OPTUNA_STORAGE=$(db_url optuna)"
            return 0
        fi
        kill -0 "$(cat "$dir/mlflow.pid")" 2>/dev/null || break
        sleep 0.5
    done
    echo "error: mlflow server did not start; see $dir/mlflow.log" >&2
    tail -n 5 "$dir/mlflow.log" >&2
    exit 1
}

case $action in
    start) start ;;
    stop) stop ;;
    purge) stop && rm -rf "$pg_home" "$dir" && echo "server: deleted $dir and its databases" ;;
    status)
        if curl -sf "http://127.0.0.1:$mlflow_port/health" >/dev/null; then echo "server: up"; else echo "server: down"; exit 1; fi ;;
    *) echo "usage: scripts/server.sh start|stop|status|purge" >&2; exit 2 ;;
esac

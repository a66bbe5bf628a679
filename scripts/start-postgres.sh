#!/usr/bin/env bash
# Start a local PostgreSQL for the modelvc test suite and print its SQLAlchemy URL.
# Idempotent; meant for a (fresh) Debian/Ubuntu machine, run as root.
# Everything but the final URL goes to stderr so callers can capture stdout.
set -euo pipefail

ROLE=modelvc
PASSWORD=modelvc

log() { echo "start-postgres: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (it may install packages and runs psql as the postgres user)"
    exit 1
fi

# Two test runs starting at once (two clones on one machine) would race on the cluster
# start and on ALTER ROLE ("tuple concurrently updated"): one at a time.
# Nothing started here may inherit the lock's descriptor (9>&- below): a postmaster
# holding it would block every later call for as long as it runs.
exec 9>/tmp/modelvc-start-postgres.lock
flock 9

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    log "installing PostgreSQL with apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y postgresql >&2 9>&-
fi

version=$(ls /etc/postgresql | sort -V | tail -1)
if [ -z "$version" ]; then
    log "no cluster found in /etc/postgresql"
    exit 1
fi
if [ ! -d "/etc/postgresql/$version/main" ]; then
    log "creating cluster $version/main"
    pg_createcluster "$version" main >&2 9>&-
fi

# Exit code 2 means "already running": fine.
pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 9>&- || {
    rc=$?
    [ "$rc" -eq 2 ] || { log "pg_ctlcluster start failed ($rc)"; exit "$rc"; }
}

port=$(awk -F= '/^[[:space:]]*port[[:space:]]*=/ {gsub(/[^0-9]/, "", $2); print $2; exit}' \
    "/etc/postgresql/$version/main/postgresql.conf")
port=${port:-5432}

as_postgres() {
    if command -v runuser >/dev/null 2>&1; then
        runuser -u postgres -- "$@"
    else
        su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
    fi
}

# Wait for the server to accept connections (a fresh start can take a moment).
for _ in $(seq 1 60); do
    if as_postgres psql -p "$port" -qAtc "SELECT 1" >/dev/null 2>&1; then
        break
    fi
    sleep 0.5
done

# The server listens on 127.0.0.1 by default and Debian's pg_hba allows
# password (scram) auth on localhost, so a password role is all we need.
as_postgres psql -p "$port" -v ON_ERROR_STOP=1 -qAt >&2 <<SQL
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') THEN
        CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD';
    ELSE
        ALTER ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD';
    END IF;
END
\$\$;
-- Tests drop their databases WITH (FORCE): that must also end an autovacuum worker
-- still on the database, which a plain role may not signal.
GRANT pg_signal_backend TO $ROLE;
SQL

echo "postgresql+psycopg://$ROLE:$PASSWORD@127.0.0.1:$port/postgres"

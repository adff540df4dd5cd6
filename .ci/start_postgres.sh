#!/usr/bin/env bash
# Sourced by .ci/run (CI is root on Debian): install and start a PostgreSQL server on
# 127.0.0.1 for the multi-worker Optuna test, and export its URL as CLNM_TEST_POSTGRES_URL.
# Idempotent: an installed package, a running cluster, an existing role or database are kept.
set -euo pipefail
if ! command -v pg_lsclusters >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
if [ -z "$(pg_lsclusters --no-header)" ]; then   # the package normally creates "main" itself
    pg_createcluster "$(ls /usr/lib/postgresql | sort -V | tail -n 1)" main >/dev/null
fi
read -r PG_VERSION PG_CLUSTER _ < <(pg_lsclusters --no-header | head -n 1)
PG_STARTED_HERE=0   # .ci/run stops the server at exit only if this script started it
if ! pg_lsclusters --no-header | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1==v && $2==c' \
        | grep -q online; then
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start && PG_STARTED_HERE=1
fi
if ! pg_lsclusters --no-header | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1==v && $2==c' \
        | grep -q online; then
    echo "PostgreSQL cluster $PG_VERSION/$PG_CLUSTER did not start:" >&2
    pg_lsclusters >&2
    exit 1
fi
PG_PORT=$(pg_lsclusters --no-header | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1==v && $2==c {print $3}')
su postgres -c "psql -p $PG_PORT -tAc \"SELECT 1 FROM pg_roles WHERE rolname='clnm_test'\"" | grep -q 1 \
    || su postgres -c "psql -p $PG_PORT -qc \"CREATE ROLE clnm_test LOGIN PASSWORD 'clnm_test'\""
su postgres -c "psql -p $PG_PORT -tAc \"SELECT 1 FROM pg_database WHERE datname='clnm_optuna_test'\"" | grep -q 1 \
    || su postgres -c "createdb -p $PG_PORT -O clnm_test clnm_optuna_test"
export CLNM_TEST_POSTGRES_URL="postgresql+psycopg2://clnm_test:clnm_test@127.0.0.1:$PG_PORT/clnm_optuna_test"

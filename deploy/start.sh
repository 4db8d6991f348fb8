#!/usr/bin/env bash
# Start one process of the template-pipeline Dagster deployment (the Procfile's commands):
#
#   deploy/start.sh web          dagster-webserver on $PORT (the UI and its GraphQL API)
#   deploy/start.sh worker       dagster-daemon run (run queue, schedules, sensors, monitoring)
#   deploy/start.sh codeserver   dagster code-server start (the code location; runs start here)
#   deploy/start.sh migrate      the release phase: dagster instance migrate (the instance's schema)
#                                and template-pipeline migrate (the Dashboard database's schema)
#   deploy/start.sh webhook      template-pipeline webhook on $PORT (signed site events; optional)
#
# Every process gets the same environment (see deploy/README.md): DAGSTER_POSTGRES_URL (required),
# DAGSTER_HOME (default: .dagster_home in the app directory), and for the code location
# DASHBOARD_DATABASE_URL, TEMPLATE_SITES_FILE, the sites' key variables, ALERT_WEBHOOK_URL.
# With DAGSTER_CODE_SERVER_HOST set, web and worker reach the code location over gRPC
# (deploy/workspace.grpc.yaml); without it each of them loads it in a subprocess of its own
# (workspace.yaml), for platforms whose processes cannot reach one another. The code server
# listens on loopback unless DAGSTER_CODE_SERVER_BIND says otherwise: whoever reaches its port
# can launch runs, so open it to a private network only.
set -euo pipefail

role="${1:-}"
cd "$(dirname "$0")/.."

fail() {
  echo "deploy/start.sh: $*" >&2
  exit 2
}

case "$role" in
  web | worker | codeserver | migrate) ;;
  webhook)
    # Stores events in the dashboard database for the webhook sensor; no Dagster instance here.
    exec template-pipeline webhook --host "${WEBHOOK_HOST:-0.0.0.0}" --port "${PORT:-8080}"
    ;;
  *) fail "usage: deploy/start.sh web|worker|codeserver|migrate|webhook" ;;
esac

[[ -n "${DAGSTER_POSTGRES_URL:-}" ]] ||
  fail "DAGSTER_POSTGRES_URL is not set: the PostgreSQL database of the Dagster instance"

# dagster-postgres is written for psycopg2, and SQLAlchemy 2.1 maps a bare postgresql:// to
# psycopg 3 (whose server-side binding breaks dagster-postgres's NOTIFY: every event write
# fails). PaaS add-ons also hand out postgres:// URLs, which SQLAlchemy rejects. Name the driver.
case "$DAGSTER_POSTGRES_URL" in
  postgres://*) DAGSTER_POSTGRES_URL="postgresql+psycopg2://${DAGSTER_POSTGRES_URL#postgres://}" ;;
  postgresql://*) DAGSTER_POSTGRES_URL="postgresql+psycopg2://${DAGSTER_POSTGRES_URL#postgresql://}" ;;
  postgresql+psycopg2://*) ;;
  *) fail "DAGSTER_POSTGRES_URL must be a postgres:// or postgresql:// URL" ;;
esac
export DAGSTER_POSTGRES_URL

# The instance configuration is the repo's dagster.yaml, copied on every start so that the
# deployed commit, not a file left on a disk, decides it.
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/.dagster_home}"
mkdir -p "$DAGSTER_HOME"
cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"

if [[ -n "${DAGSTER_CODE_SERVER_HOST:-}" ]]; then
  export DAGSTER_CODE_SERVER_PORT="${DAGSTER_CODE_SERVER_PORT:-3030}"
  workspace=(-w deploy/workspace.grpc.yaml)
else
  workspace=(-w workspace.yaml)
fi

case "$role" in
  web)
    exec dagster-webserver -h "${DAGSTER_WEBSERVER_HOST:-0.0.0.0}" -p "${PORT:-3000}" \
      "${workspace[@]}"
    ;;
  worker)
    exec dagster-daemon run "${workspace[@]}"
    ;;
  codeserver)
    exec dagster code-server start -h "${DAGSTER_CODE_SERVER_BIND:-127.0.0.1}" \
      -p "${DAGSTER_CODE_SERVER_PORT:-3030}" \
      -m template_pipeline.definitions --location-name template_pipeline
    ;;
  migrate)
    # Both schemas, before the new release's processes start: the runs refuse to write into a
    # Dashboard database whose schema is behind. Each is a no-op when already current.
    [[ -n "${DASHBOARD_DATABASE_URL:-}" ]] ||
      fail "DASHBOARD_DATABASE_URL is not set: the release step migrates the Dashboard database too"
    dagster instance migrate
    exec template-pipeline migrate
    ;;
esac

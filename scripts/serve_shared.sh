#!/usr/bin/env bash
# Start the shared server (Redis on loopback, Celery workers, gunicorn) in the foreground.
# Ctrl-C stops all of it. Logs and pid files: <cache>/shared/ (default .cache/faxplainer/shared/).
#   scripts/serve_shared.sh [--config configs/shared.yaml] [--set server.port=8060] [--run RUN_ID]
# Needs a users file first: .venv/bin/python -m app.access.auth add-user NAME
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
# exec: the launcher receives Ctrl-C/SIGTERM itself and stops every process group it started
exec "$PY" -m app.shared.stack "$@"

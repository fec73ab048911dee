#!/usr/bin/env bash
# Install Reserve into ./.venv (first run only) and serve it on http://127.0.0.1:8000.
# With no RESERVE_RIVA_URI set, the bundled offline recognizer (pocketsphinx) answers; one worker,
# state in memory (RESERVE_WORKERS=N with RESERVE_REDIS_URL for more). Ctrl-C or SIGTERM drains.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/reserve ] || [ pyproject.toml -nt .venv/.installed ]; then
    "$PYTHON" -m venv .venv
    .venv/bin/pip install --quiet --upgrade pip
    .venv/bin/pip install --quiet -e .
    touch .venv/.installed
fi
# With no API keys configured and auth not set either way, this is the local demo: turn client
# authentication off (the service logs a loud WARNING). Configure RESERVE_API_KEYS or
# RESERVE_API_KEYS_FILE for anything others can reach.
if [ -z "${RESERVE_API_KEYS:-}" ] && [ -z "${RESERVE_API_KEYS_FILE:-}" ] && [ -z "${RESERVE_AUTH_DISABLED:-}" ]; then
    echo "serve.sh: no RESERVE_API_KEYS / RESERVE_API_KEYS_FILE: starting with RESERVE_AUTH_DISABLED=true (local use only)" >&2
    export RESERVE_AUTH_DISABLED=true
fi
exec .venv/bin/reserve serve --config hypercorn.toml --bind "${RESERVE_BIND:-127.0.0.1:8000}"

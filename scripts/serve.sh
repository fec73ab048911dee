#!/usr/bin/env bash
# Install Reserve into ./.venv (first run only) and serve it on http://127.0.0.1:8000.
# With no RESERVE_RIVA_URI set, the bundled offline recognizer (pocketsphinx) answers.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/hypercorn ] || [ pyproject.toml -nt .venv/.installed ]; then
    "$PYTHON" -m venv .venv
    .venv/bin/pip install --quiet --upgrade pip
    .venv/bin/pip install --quiet -e .
    touch .venv/.installed
fi
exec .venv/bin/hypercorn --config hypercorn.toml --bind "${RESERVE_BIND:-127.0.0.1:8000}" service.app:app

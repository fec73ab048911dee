#!/usr/bin/env bash
# Install what the tests need (Debian packages, then Reserve with its test extras into ./.venv),
# then lint, type-check and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install_test_deps.sh  # stops here, with one line saying what to install, when it cannot
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/pytest ] || [ pyproject.toml -nt .venv/.installed-test ]; then
    "$PYTHON" -m venv .venv
    .venv/bin/pip install --quiet --upgrade pip
    .venv/bin/pip install --quiet -e ".[test]"
    touch .venv/.installed-test
fi
.venv/bin/ruff check service fake_riva tests bench scripts
.venv/bin/ruff format --check service fake_riva tests bench scripts
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"

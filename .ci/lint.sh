#!/usr/bin/env bash
# The static gates: lint, formatting and strict typing, with pinned tool versions (a new ruff
# or mypy release must not turn main red by itself; bump the pins in a change of their own).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q "ruff==0.17.6" "mypy==2.4.1"
echo "== ruff check"
ruff check .
echo "== ruff format --check"
ruff format --check .
echo "== mypy --strict (callpyback, then each plugin's package)"
mypy
for src in plugins/*/src; do
    mypy --strict "$src"
done

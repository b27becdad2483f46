#!/usr/bin/env bash
# The demo: the Quart example app, a worker and a throwaway Redis, a burst of jobs over
# HTTP with a live progress bar. Options: --jobs N (2000), --concurrency C (HTTP clients, 50),
# --worker-concurrency W (50). Uses $REDIS_URL instead of a throwaway Redis when it is set.
# The first run creates .venv and installs the package into it.
set -euo pipefail
cd "$(dirname "$0")"

if ! .venv/bin/python -c 'import importlib.metadata as m, quart; m.version("aiorq-flask")' \
    >/dev/null 2>&1; then
  echo "setting up .venv (first run only) ..."
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[quart]"
fi

exec .venv/bin/python -m examples.demo "$@"

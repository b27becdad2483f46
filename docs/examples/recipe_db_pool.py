"""Recipe: a database connection per worker thread, reused by every job it runs.

Plain ``def`` jobs run in the worker's thread pool (``--concurrency`` threads at most).
Opening a connection per job is slow; one per thread is safe (a sqlite3 connection
must stay in its thread) and lives as long as the worker.
"""

from __future__ import annotations

import sqlite3
import threading

from flask import current_app

from aiorq_flask import AsyncRQ

rq = AsyncRQ()
_local = threading.local()


def db() -> sqlite3.Connection:
    """This thread's connection, opened on first use from the app's config."""
    connection: sqlite3.Connection | None = getattr(_local, "connection", None)
    if connection is None:
        connection = sqlite3.connect(current_app.config["DATABASE"])
        connection.execute("CREATE TABLE IF NOT EXISTS visits (page TEXT)")
        _local.connection = connection
    return connection


@rq.job
def record_visit(page: str) -> int:
    """Store one visit; return the page's count so far."""
    connection = db()
    with connection:  # one transaction
        connection.execute("INSERT INTO visits (page) VALUES (?)", (page,))
    (count,) = connection.execute("SELECT count(*) FROM visits WHERE page = ?", (page,)).fetchone()
    return int(count)

"""Recipe: a database pool per worker, opened before its first job and closed after its last.

``worker_startup`` and ``worker_shutdown`` hooks run once per worker process, in the app
context. The pool here is a few sqlite3 connections handed out to the worker's threads
(plain ``def`` jobs run in a pool of ``--concurrency`` threads); with a real driver,
create its own pool in the same two hooks (``psycopg_pool.ConnectionPool``,
``await asyncpg.create_pool(...)`` in an ``async def`` hook, SQLAlchemy's engine).
"""

from __future__ import annotations

import queue
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from flask import current_app

from aiorq_flask import AsyncRQ
from aiorq_flask.worker import Worker

rq = AsyncRQ()


class Pool:
    """``size`` connections, each used by one thread at a time."""

    def __init__(self, path: str, size: int) -> None:
        self._idle: queue.Queue[sqlite3.Connection] = queue.Queue()
        for _ in range(size):
            self._idle.put(sqlite3.connect(path, check_same_thread=False))

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        connection = self._idle.get()  # waits while every connection is in use
        try:
            with connection:  # one transaction
                yield connection
        finally:
            self._idle.put(connection)

    def close(self) -> None:
        while not self._idle.empty():
            self._idle.get().close()


@rq.worker_startup
def open_pool(worker: Worker) -> None:
    pool = Pool(current_app.config["DATABASE"], size=worker.concurrency)
    with pool.connection() as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS visits (page TEXT)")
    current_app.extensions["db"] = pool


@rq.worker_shutdown
def close_pool(worker: Worker) -> None:
    current_app.extensions.pop("db").close()


@rq.job
def record_visit(page: str) -> int:
    """Store one visit; return the page's count so far."""
    with current_app.extensions["db"].connection() as connection:
        connection.execute("INSERT INTO visits (page) VALUES (?)", (page,))
        (count,) = connection.execute(
            "SELECT count(*) FROM visits WHERE page = ?", (page,)
        ).fetchone()
    return int(count)

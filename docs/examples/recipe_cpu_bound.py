"""Recipe: a long CPU-bound job is a plain ``def``, on a queue of its own."""

from __future__ import annotations

from aiorq_flask import AsyncRQ

rq = AsyncRQ()


@rq.job(queue="cpu", job_timeout="30m")
def count_primes(limit: int) -> int:
    """A sieve of Eratosthenes: pure CPU, no await anywhere.

    As a ``def`` it runs in a worker thread, so the worker's event loop keeps
    claiming, heartbeating and running ``async def`` jobs meanwhile. As an
    ``async def`` it would hold the loop for its whole run.
    """
    if limit < 2:
        return 0
    sieve = bytearray([1]) * (limit + 1)
    sieve[0:2] = b"\x00\x00"
    for n in range(2, int(limit**0.5) + 1):
        if sieve[n]:
            sieve[n * n :: n] = bytes(len(range(n * n, limit + 1, n)))
    return sum(sieve)

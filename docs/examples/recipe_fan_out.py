"""Recipe: fan out over many documents, then fan in once every part is done."""

from __future__ import annotations

from aiorq_flask import AsyncRQ, Job

rq = AsyncRQ()


@rq.job
def count_words(text: str) -> int:
    return len(text.split())


@rq.job
async def total(part_ids: list[str]) -> int:
    """Runs after every part finished (depends_on): sum their results."""
    counts = []
    for part_id in part_ids:
        part = await rq.queue.fetch_job(part_id)
        assert part is not None
        counts.append(await part.return_value())
    return sum(counts)


async def count_all(texts: list[str]) -> Job:
    # Fan out: every part in one round trip.
    parts = await rq.queue.enqueue_many(
        [rq.queue.prepare_data(count_words, [text], {}) for text in texts]
    )
    # Fan in: deferred until all parts have finished.
    return await total.enqueue([part.id for part in parts], depends_on=parts)

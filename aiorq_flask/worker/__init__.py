"""The asyncio worker: ``python -m aiorq_flask.worker --connection NAME``."""

from ._worker import Worker

__all__ = ["Worker"]

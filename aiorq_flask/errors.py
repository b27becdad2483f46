"""The exceptions aiorq_flask raises on purpose.

Each message names the thing at fault (a config key, an argument, a job id), so the
caller can fix it without reading our source.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """An ``RQ_*`` config value cannot be used; raised by ``init_app`` before connecting."""


class SerializationError(TypeError):
    """A value cannot be encoded with msgpack; raised before anything is written."""


class InvalidJobError(ValueError):
    """A job cannot be built: bad id, unimportable or unnamed function, bad option."""


class NoSuchJobError(LookupError):
    """The job hash does not exist in Redis (or has no ``data`` field)."""


class DeserializationError(ValueError):
    """A stored job's payload cannot be decoded."""


class InvalidJobOperation(RuntimeError):
    """The job is in a state that does not allow the operation (e.g. cancel twice)."""


class DuplicateJobError(InvalidJobOperation):
    """``unique=True`` and a job with that id exists already; nothing was written."""


class JobTimeoutError(TimeoutError):
    """A job ran longer than its ``job_timeout``; recorded as the job's failure."""


class WorkerStartupError(RuntimeError):
    """A ``worker_startup`` hook failed: the worker stops before it takes any job."""


class UnsupportedServerError(RuntimeError):
    """The Redis server is older than 6.2, the oldest aiorq_flask supports; raised by the
    worker at start, before it registers or claims anything."""

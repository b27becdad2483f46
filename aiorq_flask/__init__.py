"""aiorq_flask: an asyncio-native RQ job queue for Quart and async Flask apps.

Jobs are stored in RQ's own Redis format (with ``MsgpackSerializer``), so stock rq tools
see and run them; ``python -m aiorq_flask.worker`` runs them on an asyncio worker.
"""

from ._extension import AsyncRQ
from .current import get_current_job
from .decorator import JobWrapper
from .errors import (
    ConfigError,
    DeserializationError,
    DuplicateJobError,
    InvalidJobError,
    InvalidJobOperation,
    JobTimeoutError,
    NoSuchJobError,
    SerializationError,
)
from .job import Job, JobStatus, Result, ResultType, Retry
from .prepare import EnqueueData
from .queue import Queue
from .rate_limit import RateLimit
from .registries import (
    CanceledJobRegistry,
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    JobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from .repeat import Repeat
from .serializer import MsgpackSerializer

__all__ = [
    "AsyncRQ",
    "CanceledJobRegistry",
    "ConfigError",
    "DeferredJobRegistry",
    "DeserializationError",
    "DuplicateJobError",
    "EnqueueData",
    "FailedJobRegistry",
    "FinishedJobRegistry",
    "InvalidJobError",
    "InvalidJobOperation",
    "Job",
    "JobRegistry",
    "JobStatus",
    "JobTimeoutError",
    "JobWrapper",
    "MsgpackSerializer",
    "NoSuchJobError",
    "Queue",
    "RateLimit",
    "Repeat",
    "Result",
    "ResultType",
    "Retry",
    "ScheduledJobRegistry",
    "SerializationError",
    "StartedJobRegistry",
    "get_current_job",
]

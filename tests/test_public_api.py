"""The public surface changes only on purpose: this test names it."""

from __future__ import annotations

import aiorq_flask
import aiorq_flask.worker


def test_package_exports_exactly_the_public_names() -> None:
    assert sorted(aiorq_flask.__all__) == [
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


def test_every_exported_name_exists() -> None:
    for name in aiorq_flask.__all__:
        assert hasattr(aiorq_flask, name), name


def test_worker_package_exports_the_worker() -> None:
    assert aiorq_flask.worker.__all__ == ["Worker"]

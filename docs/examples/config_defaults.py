"""Every RQ_* app config key, set to its default: this config means the same as none."""

RQ_CONNECTION = "redis://localhost:6379/0"
RQ_QUEUES = ["default"]
RQ_QUEUE_CONNECTIONS: dict[str, object] = {}
RQ_CONNECTION_CLASS = "redis.asyncio.Redis"
RQ_ASYNC = None  # eager when app.testing, else jobs go to Redis for a worker
RQ_WORKER_ALLOWED_MODULES = None  # a worker runs any importable function
RQ_MAX_JOB_BYTES = 64 * 1024 * 1024

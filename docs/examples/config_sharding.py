"""Queues spread over two Redis servers: a worker per connection serves its queues."""

RQ_CONNECTION = "redis://redis-a.internal:6379/0"
RQ_QUEUES = ["high", "default", "reports", "exports"]
RQ_QUEUE_CONNECTIONS = {
    "reports": "redis://redis-b.internal:6379/0",
    "exports": "reports",  # shares the "reports" connection
}

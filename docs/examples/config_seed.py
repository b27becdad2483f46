"""Flask-RQ's example of several queues and connections, read the same way here."""

RQ_CONNECTION = "redis://redis.my-app.example"
RQ_QUEUES = ["priority", "email", "email-priority"]
RQ_QUEUE_CONNECTIONS = {
    "email": "redis://email-redis.my-app.example",
    "email-priority": "email",  # a reference: share the "email" entry's connection
}

"""The benchmark suite: aiorq_flask against rq, arq, saq and dramatiq on one redis-server.

Run it from the repo root with ``python -m benchmarks`` (see ``__main__`` for flags).
"""

"""Write ``docs/benchmarks.md`` (and its chart) from a full run, so the docs never drift.

Only a full run (every library, every scenario, at least 3 repetitions) rewrites the
page: a ``--quick`` or partial run must not replace published numbers.
"""

from __future__ import annotations

import shutil
from pathlib import Path

DOCS_DIR = Path(__file__).resolve().parent.parent / "docs"

METHOD = """\
## How it measures

- **One private redis-server** (`--save "" --appendonly no`) on a free port, flushed before
  every run and stopped at the end. Every library talks to it over TCP on 127.0.0.1.
- **Each peer in its own virtual environment** (`benchmarks/.venvs/<peer>`, built on first
  run from the pins in `benchmarks/venvs.py`), because arq needs `redis<6` and saq
  `redis<8`; hiredis is installed wherever the peer uses redis-py, as aiorq_flask depends
  on it (streaq talks through coredis instead). aiorq_flask
  runs on the suite's own interpreter and redis-py. The peer venvs never see aiorq_flask.
- **Side scripts** (`benchmarks/sides/<library>_side.py`) run one scenario in the
  library's interpreter and print one JSON result line; a worker is a second process
  running the same script. Each library's worker is built through its public API the way
  its CLI builds it, with logging at WARNING so per-job log lines are not what is timed.
- **Interleaved repetitions**: rep 1 runs every scenario for every library, then rep 2,
  and so on; the table shows medians.
- **Enqueue**: N awaited calls one after another on one client, after 100 warm-up calls
  (sync clients for rq and dramatiq). Bulk: one `enqueue_many` of N prepared jobs
  (rq: `Queue.enqueue_many` + `Queue.prepare_data`; streaq: `Worker.enqueue_many`).
- **Concurrent enqueue**: one process, one event loop, 100 tasks each enqueueing again as
  soon as its call returns, N calls in all (after 100 warm-up calls); jobs/s over all and
  the p99 of each call's own time. The shape of a busy web app. rq and dramatiq have
  synchronous clients only, so they have no entry.
- **Drain**: N waiting no-op jobs, one worker process. The clock starts when the worker
  prints READY just before entering its loop (interpreter start-up and imports are not
  timed) and stops when the side, polling Redis every 5 ms, sees the last job finished
  (rq and aiorq_flask: the finished registry; arq: its queue empty; saq: queued and active
  lists empty; dramatiq: the message hash empty; streaq: N entries in its results index;
  taskiq: every stream entry read by its consumer group, none pending). Results are kept
  as each library does by default (taskiq, like dramatiq, keeps none unless given a
  result backend). The no-op is each library's native fast path: a coroutine for
  aiorq_flask, arq, saq, streaq and taskiq, a plain function for rq and dramatiq.
- **50 ms sleep**: the same drain with 2,000 `asyncio.sleep(0.05)` jobs at concurrency 100
  (dramatiq: an async actor through its AsyncIO middleware, 100 worker threads).
- **Latency under load**: one worker at its defaults (aiorq_flask: concurrency 10,
  prefetch 1) serving a `high` queue first and `default` second, 10,000 no-op jobs waiting
  on `default`; then single jobs on `high`, each enqueued and waited for (after 3
  warm-up jobs, 200 at most, for 20 s at most), p50 and p99. A sample is counted only
  if the backlog was not empty when it ended; the notes say when a run took fewer.
  streaq: two priorities; rq: a worker listening on both queues in order. The other
  peers serve one queue per worker with no priority between queues.
- **Latency**: one idle worker at its default settings, then enqueue one job and wait for
  its result, 200 times in a row (after 3 warm-up jobs); p50 and p99 by nearest rank.
  Waiting uses each library's own result API: `job.latest_result(timeout=...)` (XREAD
  BLOCK) for aiorq_flask and rq, `job.result(poll_delay=0.005)` for arq, saq's pubsub
  `listen` subscribed before the enqueue, and dramatiq's Results middleware
  (`get_result(block=True)`).
- **The worker's own memory**: the worker's peak RSS during the drain at concurrency 100,
  minus the peak RSS of a process in the same interpreter that has only imported what a
  web process imports: for aiorq_flask the app module (`benchmarks/aiorq_app.py`: Quart
  and aiorq_flask), for each peer its job module (its side script, which imports the
  library; for rq also `rq_tasks`). The absolute figures stay in the table.
- **Redis CPU per job**: `used_cpu_user + used_cpu_sys` from `INFO cpu` before and after
  each phase, divided by the jobs: N enqueues one at a time; the drain of those N by one
  worker at its defaults (from before its start to the last job done, its idle loops
  included, the side polling every 50 ms); one read of each job's result. The whole life
  is their sum, and "jobs/s one Redis core sustains" is 1e6 / µs per job's whole life.
  Every library stores results here (dramatiq with its Results middleware, taskiq with
  `RedisAsyncResultBackend`; rq runs `SimpleWorker`). Under the table, `INFO commandstats`
  deltas per phase (calls and µs per job inside Redis; the commands a script runs are
  counted on their own as well as in the script) and, for aiorq_flask, each script's time
  and calls per job from `SLOWLOG` with every command logged, in a second round of N/4.
- **A fleet on one Redis**: 10,000 waiting no-op jobs, then 1, 2 or 4 aiorq_flask worker
  processes started together (default concurrency); jobs/s from the first READY to the
  last job, and Redis CPU per job over the whole drain. On 2 cores the wall time says
  little (the workers and Redis share two cores); the Redis CPU per job is the number
  that bounds a fleet: one Redis core sustains 1e6 / that many jobs/s.
- **Peak RSS**: `VmHWM` from `/proc/<pid>/status` of the worker process, read when the
  drain at concurrency 100 finishes. Every worker measured is a single process (rq's
  SimpleWorker, dramatiq's `Worker` built in-process rather than through its forking CLI).
  For rq's default forking Worker (the default-concurrency drain, JSON only) the count is
  the parent worker process alone, not its short-lived work horses. aiorq_flask's worker
  also loads the app (here a Quart app), since every job runs in its app context; the
  peers load only their job module. Measured on this machine with Python 3.11 (peak RSS
  after the imports alone): a bare interpreter 10.5 MiB, `import redis.asyncio` (redis-py
  8.1) 29.8 MiB, plus `quart` 43.9 MiB, plus aiorq_flask's worker 46.5 MiB.
- **The floor**: 10,000 sequential `MULTI/EXEC` transactions from `redis.asyncio` on one
  connection, each holding an HSET of a 15-field job hash, an SADD and an RPUSH: the
  writes of an RQ-format enqueue with no library code around them. An enqueue sent as one
  EVALSHA has a single reply to parse instead of five, so it can beat this floor.
- **Reduced job counts**: to keep the whole suite near 15 minutes on 2 cores, a peer that
  would need far longer at the full count runs a fixed smaller count (footnoted in the
  table). Rates are rates, so they are reported as measured; the sleep scenario's wall
  time is scaled linearly to 2,000 jobs.
"""


def write(
    table_markdown: str,
    goals_markdown: str,
    context: dict[str, object],
    chart: Path,
) -> Path:
    """Write the page and copy the chart beside it; return the page's path."""
    DOCS_DIR.mkdir(exist_ok=True)
    shutil.copyfile(chart, DOCS_DIR / "benchmarks.png")
    machine = context["machine"]
    versions = context["versions"]
    load = context["load_average"]
    assert isinstance(machine, dict) and isinstance(versions, dict) and isinstance(load, dict)
    page = [
        "# Benchmarks",
        "",
        "aiorq_flask against rq, arq, saq, dramatiq (Redis broker), streaq and taskiq",
        "(taskiq-redis), all on one private redis-server. Generated by the suite itself;",
        "do not edit by hand.",
        "",
        "![benchmark chart](benchmarks.png)",
        "",
        f"## Latest results ({context['generated_at']})",
        "",
        f"Medians of {context['reps']} interleaved repetitions; the whole run took "
        f"{context['total_seconds']:.0f} s. A peer's ratio is its value divided by "
        "aiorq_flask's.",
        "",
        table_markdown,
        "",
        "### Goals",
        "",
        goals_markdown,
        "",
        "## Machine",
        "",
        *[f"- {key}: {value}" for key, value in machine.items()],
        f"- load average (1 min) before / after the run: {load['before']:.1f} / "
        f"{load['after']:.1f} (other work on the machine makes every number noisier)",
        "",
        "## Versions",
        "",
        *[f"- {key}: {value}" for key, value in versions.items()],
        "",
        "## Reproduce",
        "",
        "From the repo root, with the project's virtualenv (the `bench` extra brings",
        "matplotlib) and `redis-server` on PATH:",
        "",
        "```sh",
        ".venv/bin/python -m benchmarks          # the full suite, ~15 min on 2 cores",
        ".venv/bin/python -m benchmarks --quick  # one repetition, a smoke run",
        ".venv/bin/python -m benchmarks --only aiorq_flask,saq --scenarios enqueue,latency",
        ".venv/bin/python -m benchmarks --quick --scale 0.1 --scenarios cpu,fleet  # a trial",
        "```",
        "",
        "The first run builds one virtualenv per peer under `benchmarks/.venvs/` (PyPI",
        "access needed once). Raw numbers go to `benchmarks/results/latest.json`, the chart",
        "to `benchmarks/results/latest.png`, logs to `benchmarks/results/logs/`.",
        "",
        METHOD,
    ]
    path = DOCS_DIR / "benchmarks.md"
    path.write_text("\n".join(page))
    return path

"""Apps that test subprocesses import by module path (e.g. ``tests.apps.worker_app:app``)."""

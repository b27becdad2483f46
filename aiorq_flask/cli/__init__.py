"""The package's command line: ``python -m aiorq_flask <command>`` (the ``aiorq`` script)
and ``flask rq <command>`` / ``quart rq <command>``.

One module per command family; ``_app`` loads the app and reads its config for all of
them (and for the worker's own command line). Nothing is imported here, so a command
loads only what it uses.
"""

"""A module that calls ``sys.exit`` at import: it must not take the worker with it."""

import sys


def job() -> str:
    return "never reached"


sys.exit(3)

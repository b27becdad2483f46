"""A module whose import fails: a job naming any function in it cannot run."""


def job() -> str:
    return "never reached"


raise RuntimeError("this module fails at import on purpose")

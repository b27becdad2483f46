"""Sphinx configuration: MyST Markdown pages, the furo theme, autodoc of the public API.

Build with ``sphinx-build -W -n docs docs/_build/html`` (warnings are errors and every
cross-reference must resolve). The code samples live in ``docs/examples/`` and are
included with ``literalinclude``; ``tests/test_docs.py`` runs them.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

project = "aiorq_flask"
author = "the aiorq_flask authors"
copyright = "2026, the aiorq_flask authors"

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "examples", "README.md"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = "aiorq_flask"
html_static_path: list[str] = []

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

# -n checks every reference. Names outside this project (the standard library, redis-py,
# anyio) have no inventory here (no network at build time), so they are not checked;
# references to aiorq_flask's own names are.
nitpick_ignore_regex = [
    (r"py:.*", r"(?!aiorq_flask\.)[A-Za-z_][\w.]*"),
    (r"py:.*", r"aiorq_flask\._\w+.*"),
    # JobWrapper's type variables (the function's ParamSpec and return type).
    (r"py:.*", r"~?(aiorq_flask\.\w+\.)?[PR]"),
]

# The metrics module needs the prometheus extra; the site builds without it too.
try:
    import prometheus_client  # noqa: F401
except ImportError:
    autodoc_mock_imports = ["prometheus_client"]

"""Sphinx configuration of the CallPyBack documentation site.

Build it with ``python -m sphinx -W --keep-going docs docs/_build/html`` (see README.md).
The pages stay plain Markdown (MyST), readable on a code host as they are; the site adds the
navigation (``index.md``), the API reference generated from docstrings (``api/``) and link
checking. Everything is local: no intersphinx inventories, remote fonts or scripts.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

project = "CallPyBack"
author = "CallPyBack developers"
copyright = "CallPyBack developers"


def _release() -> str:
    # The checkout's own version, so the site builds before (or without) an install.
    import re

    text = (DOCS.parent / "pyproject.toml").read_text(encoding="utf-8")
    found = re.search(r'^version = "([^"]+)"', text, re.M)
    return found.group(1) if found else "unknown"


release = version = _release()

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "callpyback_docs",  # docs/_ext: links to repository files, real class signatures
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store"]

# MyST: heading anchors so that ``page.md#a-heading`` links resolve (and are checked);
# admonitions as ``:::{note}`` fences; nothing that needs a remote script (no dollarmath).
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence", "deflist"]
# Fenced blocks whose info string carries more than the language (none today) stay literal.
myst_fence_as_directive: list[str] = []

# autodoc: signatures with their annotations as written, members in source order.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autoclass_content = "both"
# No napoleon: the docstrings are plain reStructuredText prose (no Google or NumPy sections),
# and napoleon read a first line like "What it does: ``a``, ``b``" of a data or property
# docstring as "type: description", showing the prose as a (broken) type.

# References the build cannot resolve offline (the standard library, pydantic, pluggy) are
# left as plain text; references inside the project are checked by the site test.
nitpicky = False
suppress_warnings: list[str] = []

html_theme = "furo"
html_title = f"CallPyBack {release}"
html_static_path: list[str] = []
html_theme_options = {
    # furo uses the system font stack: no web fonts are downloaded.
    "navigation_with_keys": True,
}
html_show_sourcelink = False
html_copy_source = False
pygments_style = "sphinx"

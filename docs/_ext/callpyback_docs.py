"""The CallPyBack site's own Sphinx extension.

Pages link to files of the repository outside ``docs/`` (``[examples/db](../examples/db)``):
on a code host those links work as they are, but the site has no page for them. This
extension keeps such a link's text and names the repository path instead of a dead link, and
only when the path exists: a link to a file that is not there still fails the build (MyST's
``xref_missing`` warning, an error under ``-W``).

It also gives classes the signature a user calls them with. autodoc takes a class's signature
from ``__new__`` before ``__init__``, so ``CallPyBack`` (whose ``__new__`` only tells bare
``@CallPyBack`` from ``@CallPyBack(...)``) would read ``CallPyBack(*args, **kwargs)``; and a
``typing.Protocol`` shows the ``(*args, **kwargs)`` of the constructor it has but nobody calls.
The first gets its ``__init__``'s signature, the second none.

And it keeps a new page from breaking the build before it has its place: a page that no
toctree lists (one a branch added while the navigation was edited on another) is listed under
"Other pages" at the end of the navigation, instead of the "not included in any toctree"
warning that ``-W`` makes an error. ``tests/test_docs_site.py`` says which pages are there.
"""

from __future__ import annotations

import inspect
import posixpath
import re
from pathlib import Path
from typing import Any, Optional, Tuple

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform


class RepositoryLinks(SphinxPostTransform):
    """Turn MyST links to existing repository paths outside the docs into named paths."""

    default_priority = 8  # before MyST's resolver (9), which would warn about them

    def run(self, **kwargs: Any) -> None:
        srcdir = Path(self.env.srcdir)
        root = srcdir.parent
        for node in list(self.document.findall(addnodes.pending_xref)):
            if node.get("reftype") != "myst":
                continue
            target = str(node.get("reftarget", ""))
            if not target or "://" in target or target.startswith("#"):
                continue
            docdir = posixpath.dirname(node.get("refdoc", self.env.docname))
            path = (srcdir / docdir / target.split("#", 1)[0]).resolve()
            try:
                inside_docs = path.is_relative_to(srcdir)
            except AttributeError:  # Python < 3.9 has no is_relative_to
                inside_docs = str(path).startswith(str(srcdir))
            if inside_docs or not path.exists() or not path.is_relative_to(root):
                continue
            shown = path.relative_to(root).as_posix()
            if path.is_dir():
                shown += "/"
            text = node.astext()
            replacement = nodes.inline(classes=["repository-path"])
            replacement += node.children
            if shown.rstrip("/") not in text:
                replacement += nodes.Text(" (")
                replacement += nodes.literal(shown, shown)
                replacement += nodes.Text(" in the repository)")
            node.replace_self(replacement)


_VARIADIC = re.compile(r"\(\*args(: [\w.~]+)?, \*\*kwargs(: [\w.~]+)?\)")


def class_signature(
    app: Sphinx,
    what: str,
    name: str,
    obj: Any,
    options: Any,
    signature: Optional[str],
    return_annotation: Optional[str],
) -> Optional[Tuple[str, Optional[str]]]:
    """``autodoc-process-signature``: a class's real signature instead of ``(*args, **kwargs)``."""
    if what not in ("class", "exception") or not _VARIADIC.fullmatch(signature or ""):
        return None
    if getattr(obj, "_is_protocol", False):
        return "", return_annotation  # a Protocol is implemented, not called
    init = vars(obj).get("__init__")
    if init is None or not inspect.isfunction(init):
        return None
    from sphinx.ext.autodoc.preserve_defaults import update_defvalue
    from sphinx.util import inspect as sphinx_inspect

    update_defvalue(app, init, True)  # defaults as written in the source, as autodoc shows them
    sig = sphinx_inspect.signature(init, bound_method=True)
    text = sphinx_inspect.stringify_signature(
        sig, show_return_annotation=False, unqualified_typehints=True
    )
    return text, return_annotation


_TOCTREE = re.compile(r"^```\{toctree\}\n(?P<body>.*?)^```", re.M | re.S)
OTHER_PAGES = "Other pages"


def listed_pages(srcdir: Path) -> set[str]:
    """The docnames some toctree of the Markdown pages lists (the root page is implied)."""
    listed = {"index"}
    for page in srcdir.glob("**/*.md"):
        if "_build" in page.parts:
            continue
        base = page.parent.relative_to(srcdir).as_posix()
        for block in _TOCTREE.finditer(page.read_text(encoding="utf-8")):
            for line in block.group("body").splitlines():
                entry = line.strip()
                if not entry or entry.startswith(":"):
                    continue
                entry = entry.rsplit("<", 1)[-1].rstrip(">").strip()  # "Title <page>"
                listed.add(posixpath.normpath(posixpath.join(base, entry)))
    return listed


def unlisted_pages(app: Sphinx) -> list[str]:
    return sorted(set(app.env.found_docs) - listed_pages(Path(app.srcdir)))


def add_unlisted_pages(app: Sphinx, docname: str, source: list[str]) -> None:
    """``source-read`` of the root page: a hidden toctree of the pages no toctree lists."""
    if docname != app.config.root_doc:
        return
    pages = unlisted_pages(app)
    if pages:
        entries = "\n".join(pages)
        source[0] += f"\n\n```{{toctree}}\n:caption: {OTHER_PAGES}\n:hidden:\n\n{entries}\n```\n"


def setup(app: Sphinx) -> dict[str, Any]:
    app.setup_extension("sphinx.ext.autodoc")  # for its autodoc-process-signature event
    app.connect("source-read", add_unlisted_pages)
    app.add_post_transform(RepositoryLinks)
    app.connect("autodoc-process-signature", class_signature)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

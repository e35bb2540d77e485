"""The CallPyBack site's own Sphinx extension.

Pages link to files of the repository outside ``docs/`` (``[examples/db](../examples/db)``):
on a code host those links work as they are, but the site has no page for them. This
extension keeps such a link's text and names the repository path instead of a dead link, and
only when the path exists: a link to a file that is not there still fails the build (MyST's
``xref_missing`` warning, an error under ``-W``).
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

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


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_post_transform(RepositoryLinks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

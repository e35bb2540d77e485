"""Start-up installation from the ``callpyback-autoinstall.pth`` file, when asked for.

The ``.pth`` line imports this module only if ``CALLPYBACK_AUTOINSTALL`` is set, so an
interpreter that did not ask pays one environment lookup.  ``boot()`` runs at most once per
interpreter, and never lets an error escape into ``site`` (which would abort start-up of every
Python program in the environment).
"""

from __future__ import annotations

import sys

_booted = False


def boot() -> None:
    global _booted
    if _booted:
        return
    _booted = True
    from . import AUTOINSTALL_ENV, _flag, disabled, install

    if not _flag(AUTOINSTALL_ENV) or disabled():
        return
    try:
        install()
    except Exception as exc:
        # A broken config must not stop the program: it runs uninstrumented, and says why.
        print(
            f"callpyback: auto-instrumentation not installed ({AUTOINSTALL_ENV} is set): "
            f"{type(exc).__name__}: {exc}",
            file=sys.stderr,
        )

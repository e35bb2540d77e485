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
    from ..config._flags import autoinstall
    from . import AUTOINSTALL_ENV, disabled, install

    switch = autoinstall()
    if switch.warning:
        print(f"callpyback: {switch.warning}", file=sys.stderr)
    if not switch.on or disabled():
        return
    try:
        # Built lazily: sys.path does not hold the program's directory yet.  The parent
        # (``callpyback run``) has built the same configuration up front.
        install(build=False)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        # Nothing may stop the interpreter here (site only contains Exception, so a
        # SystemExit would abort every start-up): the program runs uninstrumented, and says why.
        print(
            f"callpyback: auto-instrumentation not installed ({AUTOINSTALL_ENV} is set): "
            f"{type(exc).__name__}: {exc}",
            file=sys.stderr,
        )

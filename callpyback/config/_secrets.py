"""Which values are secrets: by their key's name, by ``settings.redact``, or by the environment
variable they were read from.  Used by error messages and by ``callpyback config show``."""

from __future__ import annotations

import re
from typing import Any, Iterable, List, Mapping

from ._errors import KeyPath

__all__ = ["REDACTED", "is_secret", "redact"]

_SECRET = re.compile(
    r"(?i)(pass(word|wd|phrase)?|secret|token|api[_-]?key|private[_-]?key|credential|auth|dsn|salt)"
)
REDACTED = "***"


def is_secret(key: str, extra: Iterable[str] = ()) -> bool:
    return bool(_SECRET.search(key)) or key.lower() in extra


def redact(
    value: Any, extra: Iterable[str], env_refs: Mapping[KeyPath, List[str]], path: KeyPath = ()
) -> Any:
    """``value`` with every secret replaced by ``***`` (``path`` locates it for ``env_refs``)."""
    extra = set(extra)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            sub = (*path, k)
            if is_secret(str(k), extra) and not isinstance(v, (dict, list, bool)):
                out[k] = REDACTED
            else:
                out[k] = redact(v, extra, env_refs, sub)
        return out
    if isinstance(value, list):
        return [redact(v, extra, env_refs, (*path, i)) for i, v in enumerate(value)]
    # A value read from a secret-looking environment variable is a secret wherever it lands.
    names = env_refs.get(path)
    if names and any(is_secret(n, extra) for n in names):
        return REDACTED
    return value

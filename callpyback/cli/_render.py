"""How a configuration reads to people: ``callpyback explain`` and ``callpyback config show``.

Rendering is the CLI's: the :class:`~callpyback.config.Config` is data, and these functions only
read it (they build nothing and import no user code).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from ..config._config import MISSING, RULE, ComponentRef, Config, PipelineConfig
from ..config._errors import format_path
from ..config._secrets import redact

__all__ = ["effective", "explain", "record"]


def explain(config: Config, target: str) -> str:
    """Which pipeline ``target`` gets, which pattern matched, what it runs, and why."""
    lines = [f"target:   {target}", f"config:   {config.source}"]
    if ":" not in target:
        lines.append("note:     no ':qualname' given; patterns naming a qualname cannot match")
    if not config.settings.enabled:
        origin = config.origins.get("enabled", "file")
        lines.append(f"disabled: settings.enabled is false ({origin}); nothing is instrumented")
    found = config.pipeline_for(target)
    for pipeline, pattern, excluded in config.matches(target):
        if excluded is not None:
            lines.append(
                f"skipped:  {pipeline.label} (matched {pattern!r}, excluded by {excluded!r})"
            )
        elif found is not None and pipeline.index != found.index:
            lines.append(
                f"shadowed: {pipeline.label} also matches {pattern!r}, but an earlier pipeline wins"
            )
    if found is None:
        lines.append("pipeline: none; the function is left alone")
        lines.append(f"rule:     {RULE}")
        return "\n".join(lines)
    p = found.pipeline
    line = config.locate(("pipelines", p.index))[1]
    where = f", line {line}" if line is not None else ""
    lines.append(f"pipeline: {p.label} ({format_path(('pipelines', p.index))}{where})")
    lines.append(f"matched:  {found.pattern!r}")
    lines.append(f"rule:     {RULE}")
    if p.description:
        lines.append(f"about:    {p.description}")
    if not p.enabled:
        lines.append("effect:   the pipeline is disabled (enabled = false); not wrapped")
    elif p.is_empty:
        lines.append("effect:   the pipeline is empty: the function is deliberately not wrapped")
    lines.append("observers (configuration order; a higher priority runs first):")
    lines.extend(_numbered(p.observers))
    lines.append("error handlers (chain order):")
    chain = [f"  {i}. {r.label:<16} {r.describe()}" for i, r in enumerate(p.error_handlers, 1)]
    if p.default_return is not MISSING:
        classes = ", ".join(p.exception_classes) or "Exception"
        chain.append(f"  {len(chain) + 1}. default_return   {p.default_return!r} for {classes}")
    lines.extend(chain or ["  (none)"])
    ts, ex = p.time_source, p.variable_extractor
    lines.append(f"time source:        {ts.describe() if ts else 'system (built-in default)'}")
    extractor = (
        ex.describe()
        if ex
        else ("tracing (built-in default for variables)" if p.variables else "none")
    )
    lines.append(f"variable extractor: {extractor}")
    lines.append(f"variables:          {', '.join(p.variables) or '(none)'}")
    failures = p.max_observer_failures or config.settings.max_observer_failures
    lines.append(f"max_observer_failures: {failures}")
    return "\n".join(lines)


def record(config: Config, target: str, skipped: Optional[str] = None) -> Dict[str, Any]:
    """``explain --json``: one target as data.  ``skipped`` is why the hook would not wrap the
    object even though a pipeline applies (a property, say)."""
    found = config.pipeline_for(target)
    if found is None:
        return {
            "target": target,
            "pipeline": None,
            "pattern": None,
            "wrapped": False,
            "observers": [],
            "error_handlers": [],
            "skipped": skipped,
        }
    p = found.pipeline
    return {
        "target": target,
        "pipeline": p.label,
        "index": found.index,
        "pattern": found.pattern,
        "wrapped": bool(config.settings.enabled and p.applies and skipped is None),
        "observers": [r.label for r in p.observers],
        "error_handlers": [r.label for r in p.error_handlers],
        "skipped": skipped,
    }


def effective(config: Config, redacted: bool = True) -> Dict[str, Any]:
    """The configuration after precedence and substitution, secrets replaced by ``***``."""
    doc: Dict[str, Any] = {"version": config.version}
    doc["settings"] = config.settings.model_dump(exclude_none=True)
    for kind, refs in config.components.items():
        if refs:
            doc[f"{kind}s"] = {name: {"type": r.type, **r.options} for name, r in refs.items()}
    pipelines = [_pipeline(p) for p in config.pipelines]
    if pipelines:
        doc["pipelines"] = pipelines
    if redacted:
        extra = {k.lower() for k in config.settings.redact}
        doc = redact(doc, extra, config.env_refs)
    return doc


def _pipeline(p: PipelineConfig) -> Dict[str, Any]:
    entry: Dict[str, Any] = {}
    if p.name:
        entry["name"] = p.name
    if p.extends:
        entry["extends"] = p.extends
    if p.description:
        entry["description"] = p.description
    if not p.enabled:
        entry["enabled"] = False
    entry["match"] = list(p.match)
    if p.exclude:
        entry["exclude"] = list(p.exclude)
    entry["observers"] = [_show_ref(r) for r in p.observers]
    entry["error_handlers"] = [_show_ref(r) for r in p.error_handlers]
    if p.time_source:
        entry["time_source"] = _show_ref(p.time_source)
    if p.variable_extractor:
        entry["variable_extractor"] = _show_ref(p.variable_extractor)
    optional: List[Tuple[str, Any, Any]] = [
        ("variables", list(p.variables), []),
        ("exception_classes", list(p.exception_classes), []),
        ("default_return", p.default_return, MISSING),
        ("max_observer_failures", p.max_observer_failures, None),
        ("enable_async_observers", p.enable_async_observers, None),
    ]
    for key, value, unset in optional:
        if value is not unset and value != unset:
            entry[key] = value
    return entry


def _show_ref(ref: ComponentRef) -> Any:
    return ref.name if ref.name else {"type": ref.type, **ref.options}


def _numbered(refs: Tuple[ComponentRef, ...]) -> List[str]:
    if not refs:
        return ["  (none)"]
    return [f"  {i}. {r.label:<16} {r.describe()}" for i, r in enumerate(refs, 1)]

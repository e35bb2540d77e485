"""The pydantic models of ``callpyback.toml``.  Validating a document *produces* the validated
configuration: component references (:class:`ComponentRef`) and linked pipelines
(:class:`PipelineConfig`), with ``extends`` applied and settings' defaults filled in.

What the models check beyond types lives in their validators, which read a :class:`Scope`
passed as pydantic's validation context: the plugin registry (component types and their
options models), the names declared in the component sections, and the settings given as
arguments and in the environment.  Validators report problems as pydantic errors of type
``"callpyback"`` carrying a :class:`~callpyback.config.Problem` (``ctx["problem"]``), so that
pydantic collects *every* problem of a document in one pass, each at its key path; the loader
turns them into a :class:`~callpyback.config.ConfigError`.

A reference is a discriminated union on its shape: a string names a declared instance or a
registered type, a table (``{type = "...", ...}``) is an inline instance.  A component table is
discriminated on ``type``: its options are validated by the options model the registry holds
for that type (in no-import mode: nothing of the user's is imported).  The members of that
union are whatever plugins registered, so it is dispatched by a validator rather than spelled
out as a static ``Union`` (which would compile every registered schema at every start-up).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Dict,
    FrozenSet,
    List,
    Literal,
    Mapping,
    NoReturn,
    Optional,
    Sequence,
    Tuple,
    Type,
    Union,
)

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    ValidationInfo,
    WrapValidator,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from typing_extensions import Annotated

from ._config import MISSING, ComponentRef, PipelineConfig
from ._errors import ConfigError, KeyPath, Problem, format_path, suggest
from ._exceptions import ExceptionNameError, check_exception_name
from ._flags import kill_switch, parse_flag
from ._patterns import PatternError, compile_pattern
from ._precedence import UNSET, choose, env_name

__all__ = [
    "INHERITED",
    "REFERENCE_ERROR",
    "SECTIONS",
    "TAGS",
    "TOP_LEVEL_KEYS",
    "VERSIONS",
    "ComponentOptionsError",
    "DocumentModel",
    "PipelineModel",
    "Scope",
    "SettingsModel",
    "document_model",
    "options_error",
    "reference_problem",
]

#: Supported values of the top-level ``version`` key.
VERSIONS = (1,)

#: Named-instance section -> component kind in the registry.
SECTIONS: Dict[str, str] = {
    "observers": "observer",
    "error_handlers": "error_handler",
    "time_sources": "time_source",
    "variable_extractors": "variable_extractor",
}
_SECTION_OF = {kind: section for section, kind in SECTIONS.items()}

TOP_LEVEL_KEYS = ("version", "settings", *SECTIONS, "pipelines")

#: Keys a pipeline inherits from the one it ``extends`` when it does not set them itself.
INHERITED = (
    "observers",
    "error_handlers",
    "time_source",
    "variable_extractor",
    "variables",
    "exception_classes",
    "default_return",
    "max_observer_failures",
    "enable_async_observers",
)

#: The tags of the reference union; pydantic puts them in error locations, the loader drops them.
TAG_NAME, TAG_TABLE = "<name>", "<table>"
TAGS = frozenset({TAG_NAME, TAG_TABLE})

_PATTERNS_ALLOWED = "module or module:qualname with globs (* ** ? [..]), or re:REGEX"
#: Validation context for component options: check exception names without importing them.
_OPTIONS_CONTEXT = {"callpyback_no_import": True}


# --- the scope: what validators know beyond the document --------------------------------------


class Scope:
    """pydantic's validation context for one document."""

    def __init__(
        self,
        registry: Any,
        *,
        explicit: Optional[Mapping[str, Any]] = None,
        env: Optional[Mapping[str, str]] = None,
        locator: Any = None,
    ) -> None:
        self.registry = registry
        self.explicit: Dict[str, Any] = dict(explicit or {})
        self.env: Mapping[str, str] = env if env is not None else {}
        self.locator = locator
        #: kind -> names declared in its section (read from the document before validation, so
        #: a reference to an instance that is itself invalid is not a second problem).
        self.declared: Dict[str, FrozenSet[str]] = {kind: frozenset() for kind in SECTIONS.values()}
        #: setting -> where its value came from ("argument", "environment CALLPYBACK_X", "file").
        self.origins: Dict[str, str] = {}
        #: (kind, type) -> the errors of that type with no options (references by type name).
        self.checked: Dict[Tuple[str, str], List[InitErrorDetails]] = {}


def _scope(info: ValidationInfo) -> Optional[Scope]:
    context = info.context
    return context if isinstance(context, Scope) else None


# --- reporting problems as pydantic errors ----------------------------------------------------


def _custom(problem: Problem) -> PydanticCustomError:
    return PydanticCustomError(
        "callpyback", "{message}", {"message": problem.message, "problem": problem}
    )


def _detail(problem: Problem, loc: KeyPath = (), value: Any = None) -> InitErrorDetails:
    return InitErrorDetails(type=_custom(problem), loc=loc, input=value)


def _raise(details: Sequence[InitErrorDetails]) -> NoReturn:
    raise ValidationError.from_exception_data("callpyback", list(details))


def _details(exc: ValidationError, prefix: KeyPath = ()) -> List[InitErrorDetails]:
    """A ValidationError's errors, to be raised again together with others."""
    out: List[InitErrorDetails] = []
    for error in exc.errors(include_url=False):
        ctx = error.get("ctx") or {}
        loc = (*prefix, *error["loc"])
        if error["type"] == "callpyback":
            out.append(
                InitErrorDetails(
                    type=PydanticCustomError("callpyback", "{message}", ctx),
                    loc=loc,
                    input=error.get("input"),
                )
            )
        elif error["type"] == REFERENCE_ERROR:
            out.append(
                InitErrorDetails(
                    type=PydanticCustomError(REFERENCE_ERROR, error["msg"]),
                    loc=loc,
                    input=error.get("input"),
                )
            )
        else:
            out.append(
                InitErrorDetails(type=error["type"], loc=loc, input=error.get("input"), ctx=ctx)
            )
    return out


def _names_allowed(registry: Any, kind: str) -> str:
    names = registry.names(kind) if registry is not None else []
    return ", ".join(names) or f"(no {kind} types are registered)"


# --- components ----------------------------------------------------------------------------


def _check_type(
    scope: Scope, kind: str, type_: str, options: Mapping[str, Any], type_loc: KeyPath
) -> List[InitErrorDetails]:
    """The problems of ``type_`` (registered for ``kind``?) and of ``options`` (valid for it?)."""
    from .._registry import UnknownComponentError

    registry = scope.registry
    try:
        spec = registry.get(kind, type_)
    except UnknownComponentError as exc:
        return [
            _detail(
                Problem(
                    f"unknown {kind} type {type_!r}; {registry.availability(type_)}",
                    given=type_,
                    allowed=_names_allowed(registry, kind),
                    suggestions=list(exc.suggestions),
                ),
                type_loc,
                type_,
            )
        ]
    key = (kind, type_)
    if not options and key in scope.checked:
        return scope.checked[key]
    errors: List[InitErrorDetails] = []
    try:
        spec.validate(options, context=_OPTIONS_CONTEXT)
    except ValidationError as exc:
        from ._errors import option_problems

        for problem in option_problems(exc.errors(include_url=False), spec):
            loc, problem.path = problem.path, ()
            errors.append(_detail(problem, loc, _at(options, loc)))
    except Exception as exc:  # an options class that is not pydantic, or "takes no options"
        errors.append(
            _detail(
                Problem(f"bad options for {kind} type {type_!r}: {exc}", given=dict(options)),
                (),
                dict(options),
            )
        )
    if not options:
        scope.checked[key] = errors
    return errors


def _at(value: Any, loc: KeyPath) -> Any:
    for part in loc:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return None
    return value


class ComponentTable(BaseModel):
    """One component instance: ``type`` (a registered type of the kind) and its options."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: ClassVar[str] = ""

    type: str
    options: Dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _split(cls, data: Any, info: ValidationInfo) -> Any:
        # Every key but ``type`` is an option of that type: keep them apart, so that an option
        # can have any name (even one of BaseModel's attributes).
        if not isinstance(data, dict):
            return data  # the section or the reference union reports the shape
        scope = _scope(info)
        registry = scope.registry if scope is not None else None
        kind = cls.kind
        if "type" not in data:
            raise _custom(
                Problem(
                    f"a {kind} needs a 'type' naming a registered {kind} type",
                    allowed=_names_allowed(registry, kind),
                )
            )
        type_ = data["type"]
        if not isinstance(type_, str) or not type_:
            _raise(
                [
                    _detail(
                        Problem(
                            "'type' must be a non-empty string",
                            given=type_,
                            allowed=_names_allowed(registry, kind),
                        ),
                        ("type",),
                        type_,
                    )
                ]
            )
        return {"type": type_, "options": {k: v for k, v in data.items() if k != "type"}}

    @model_validator(mode="after")
    def _registered(self, info: ValidationInfo) -> ComponentTable:
        scope = _scope(info)
        if scope is not None:
            errors = _check_type(scope, self.kind, self.type, self.options, ("type",))
            if errors:
                _raise(errors)
        return self


class ObserverTable(ComponentTable):
    kind: ClassVar[str] = "observer"


class ErrorHandlerTable(ComponentTable):
    kind: ClassVar[str] = "error_handler"


class TimeSourceTable(ComponentTable):
    kind: ClassVar[str] = "time_source"


class ExtractorTable(ComponentTable):
    kind: ClassVar[str] = "variable_extractor"


_TABLES: Dict[str, type] = {
    "observer": ObserverTable,
    "error_handler": ErrorHandlerTable,
    "time_source": TimeSourceTable,
    "variable_extractor": ExtractorTable,
}


def check_name(scope: Scope, kind: str, value: str) -> List[InitErrorDetails]:
    """A string reference: an instance declared in the kind's section, else a registered type
    (with no options, so its required options must have defaults)."""
    section = _SECTION_OF[kind]
    if not value:
        return [_detail(_reference_problem(kind, value), (), value)]
    declared = scope.declared[kind]
    if value in declared:
        return []  # resolved when linking; if the instance is invalid, that is its own problem
    registry = scope.registry
    if (kind, value) in registry:
        return _check_type(scope, kind, value, {}, ())
    names = sorted(declared)
    types = registry.names(kind)
    return [
        _detail(
            Problem(
                f"unknown {kind} {value!r}: neither a name declared in [{section}] nor a "
                f"registered {kind} type; {registry.availability(value)}",
                given=value,
                allowed="declared: "
                + (", ".join(names) or "(none)")
                + "; types: "
                + (", ".join(types) or "(none)"),
                suggestions=suggest(value, [*names, *types]),
            ),
            (),
            value,
        )
    ]


def _reference_problem(kind: str, value: Any = dataclasses.MISSING) -> Problem:
    section = _SECTION_OF.get(kind, "the component sections")
    problem = Problem(
        f"a {kind} reference must be a name or an inline table",
        allowed=f'"NAME" of [{section}.NAME], a registered type, or {{type = "..."}}',
    )
    if value is not dataclasses.MISSING:
        problem.given = value
    return problem


def _name_validator(kind: str) -> Any:
    def validate(value: str, info: ValidationInfo) -> str:
        scope = _scope(info)
        if scope is not None:
            errors = check_name(scope, kind, value)
            if errors:
                _raise(errors)
        return value

    return AfterValidator(validate)


def _shape(value: Any) -> Optional[str]:
    if isinstance(value, str):
        return TAG_NAME
    if isinstance(value, (dict, BaseModel)):
        return TAG_TABLE
    return None


#: The error type of a reference that is neither a string nor a table.  (The union's
#: discriminator must stay hashable, so it cannot carry a Problem: the loader makes one.)
REFERENCE_ERROR = "callpyback_reference"
#: The key holding a reference -> the kind of component it refers to.
REFERENCE_KINDS = {
    "observers": "observer",
    "error_handlers": "error_handler",
    "time_source": "time_source",
    "variable_extractor": "variable_extractor",
}


def reference_problem(loc: KeyPath, value: Any) -> Problem:
    """The problem of a reference at ``loc`` that is neither a name nor a table."""
    key = next((p for p in reversed(loc) if isinstance(p, str) and p in REFERENCE_KINDS), "")
    return _reference_problem(REFERENCE_KINDS.get(key, "component"), value)


def _reference(kind: str) -> Any:
    """The type of one reference to a ``kind`` component: a name, or an inline table."""
    return Annotated[
        Union[
            Annotated[Annotated[str, _name_validator(kind)], Tag(TAG_NAME)],
            Annotated[_TABLES[kind], Tag(TAG_TABLE)],
        ],
        Discriminator(
            _shape,
            custom_error_type=REFERENCE_ERROR,
            custom_error_message=_reference_problem(kind).message,
        ),
    ]


if TYPE_CHECKING:
    ObserverRef = Union[str, ObserverTable]
    ErrorHandlerRef = Union[str, ErrorHandlerTable]
    TimeSourceRef = Union[str, TimeSourceTable]
    ExtractorRef = Union[str, ExtractorTable]
else:
    ObserverRef = _reference("observer")
    ErrorHandlerRef = _reference("error_handler")
    TimeSourceRef = _reference("time_source")
    ExtractorRef = _reference("variable_extractor")


def _section(kind: str) -> Any:
    """``[observers]`` and its kin: a table of named instances, each a table with a type."""
    section = _SECTION_OF[kind]

    def validate(value: Any, handler: Any) -> Any:
        if not isinstance(value, dict):
            raise _custom(
                Problem(
                    f"[{section}] must be a table of named {kind}s",
                    given=value,
                    allowed=f"[{section}.NAME] tables with a 'type' key",
                )
            )
        errors: List[InitErrorDetails] = []
        tables = {}
        for name, decl in value.items():
            if isinstance(decl, dict):
                tables[name] = decl
            else:
                errors.append(
                    _detail(
                        Problem(
                            f"{section}.{name} must be a table with a 'type' key",
                            given=decl,
                            allowed=f'[{section}.{name}] type = "..." and its options',
                        ),
                        (name,),
                        decl,
                    )
                )
        try:
            result = handler(tables)
        except ValidationError as exc:
            errors.extend(_details(exc))
        if errors:
            _raise(errors)
        return result

    return WrapValidator(validate)


# --- settings ------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SettingsModel(_Strict):
    """``[settings]``: process-wide switches; each can be overridden by ``CALLPYBACK_<KEY>``."""

    enabled: bool = True
    max_observer_failures: int = Field(5, ge=1)
    enable_async_observers: bool = False
    time_source: Optional[str] = None
    variable_extractor: Optional[str] = None
    redact: List[str] = Field(default_factory=list)
    #: A component that cannot be built: "error" stops start-up (``install()``,
    #: ``callpyback run``) with one message; "warn" warns and runs without it.
    on_build_error: Literal["error", "warn"] = "error"
    #: The import hook skips functions that inspect their caller's frame (``sys._getframe``,
    #: ``inspect.currentframe``...): our frame would change what they see.  True observes them.
    instrument_frame_inspectors: bool = False

    @field_validator("time_source", "variable_extractor")
    @classmethod
    def _reference(cls, value: Optional[str], info: ValidationInfo) -> Optional[str]:
        scope = _scope(info)
        if scope is not None and value is not None:
            errors = check_name(scope, str(info.field_name), value)
            if errors:
                _raise(errors)
        return value


_BOOLEAN_SETTINGS = frozenset(
    name for name, field in SettingsModel.model_fields.items() if field.annotation in (bool, "bool")
)


def _merge_settings(file_settings: Mapping[str, Any], scope: Scope) -> Dict[str, Any]:
    """The one place where argument > environment > file > default is applied to settings."""
    fields = list(SettingsModel.model_fields)
    values: Dict[str, Any] = {k: v for k, v in file_settings.items() if k not in fields}
    for key, value in scope.explicit.items():
        if key not in fields:
            values[key] = value
            scope.origins[key] = "argument"
    for key in fields:
        chosen = choose(
            scope.explicit.get(key, UNSET),
            env=scope.env,
            variable=env_name(key),
            file=file_settings.get(key, UNSET),
        )
        if chosen.value is UNSET:
            continue
        value = chosen.value
        if chosen.origin.startswith("environment"):
            if key == "redact":
                value = [v.strip() for v in str(value).split(",") if v.strip()]
            elif key in _BOOLEAN_SETTINGS:
                # The same words as every other boolean variable; other values are left for
                # pydantic to reject, naming the variable.
                with contextlib.suppress(ValueError):
                    value = parse_flag(str(value))
        values[key] = value
        scope.origins[key] = chosen.origin
    killed = kill_switch(scope.env)
    if killed.on:
        values["enabled"] = False
        scope.origins["enabled"] = "environment CALLPYBACK_DISABLED (kill switch)" + (
            f"; {killed.warning}" if killed.warning else ""
        )
    return values


# --- pipelines -----------------------------------------------------------------------------


def _pattern(raw: str) -> str:
    try:
        compile_pattern(raw)
    except PatternError as exc:
        raise _custom(Problem(str(exc), given=raw, allowed=_PATTERNS_ALLOWED)) from None
    return raw


def _identifier(name: str) -> str:
    if not name.isidentifier():
        raise _custom(
            Problem(
                f"{name!r} is not a Python identifier",
                given=name,
                allowed="names of local variables, such as 'amount'",
            )
        )
    return name


def _exception_class(name: str) -> str:
    try:
        return check_exception_name(name)
    except ExceptionNameError as exc:
        raise _custom(
            Problem(exc.short, given=name, allowed=exc.allowed, suggestions=exc.suggestions)
        ) from None


PatternText = Annotated[str, AfterValidator(_pattern)]
Identifier = Annotated[str, AfterValidator(_identifier)]
ExceptionClassName = Annotated[str, AfterValidator(_exception_class)]


class PipelineModel(_Strict):
    """One ``[[pipelines]]`` entry.  Which keys it sets (``model_fields_set``) decides what it
    inherits through ``extends``."""

    name: Optional[str] = Field(None, min_length=1)
    description: str = ""
    extends: Optional[str] = Field(None, min_length=1)
    enabled: bool = True
    match: List[PatternText] = Field(min_length=1)
    exclude: List[PatternText] = Field(default_factory=list)
    observers: Optional[List[ObserverRef]] = None
    error_handlers: Optional[List[ErrorHandlerRef]] = None
    time_source: Optional[TimeSourceRef] = None
    variable_extractor: Optional[ExtractorRef] = None
    variables: Optional[List[Identifier]] = None
    exception_classes: Optional[List[ExceptionClassName]] = None
    #: Any TOML value (TOML has no null, so giving the key is what counts).
    default_return: Any = None
    max_observer_failures: Optional[int] = Field(None, ge=1)
    enable_async_observers: Optional[bool] = None

    @model_validator(mode="before")
    @classmethod
    def _table(cls, data: Any) -> Any:
        if not isinstance(data, (dict, BaseModel)):
            raise _custom(
                Problem(
                    "each pipeline must be a table",
                    given=data,
                    allowed=(
                        "[[pipelines]] tables with match = [...] and observers, error_handlers..."
                    ),
                )
            )
        return data


def _pipeline_label(raw: Sequence[Any], i: int) -> str:
    name = raw[i].get("name") if isinstance(raw[i], dict) else None
    return repr(name) if isinstance(name, str) and name else f"pipelines[{i}]"


def _cross_checks(raw: Sequence[Any], scope: Optional[Scope]) -> List[InitErrorDetails]:
    """Duplicate names, unknown and circular ``extends``: read from the raw entries, so they
    are reported even when some entry is invalid in other ways."""
    errors: List[InitErrorDetails] = []
    names: Dict[str, int] = {}
    for i, item in enumerate(raw):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name:
            continue
        if name in names:
            first = ("pipelines", names[name], "name")
            line = scope.locator.line(first) if scope and scope.locator is not None else None
            at = f" (line {line})" if line else ""
            errors.append(
                _detail(
                    Problem(
                        f"duplicate pipeline name {name!r}: {format_path(first)}{at} has it too",
                        given=name,
                        allowed="a name used by one pipeline only",
                    ),
                    (i, "name"),
                    name,
                )
            )
        else:
            names[name] = i
    bases: Dict[int, int] = {}
    for i, item in enumerate(raw):
        base = item.get("extends") if isinstance(item, dict) else None
        if not isinstance(base, str) or not base:
            continue
        target = names.get(base)
        if target is None:
            errors.append(
                _detail(
                    Problem(
                        f"pipeline {base!r} does not exist",
                        given=base,
                        allowed=", ".join(names) or "(no named pipelines)",
                        suggestions=suggest(base, names),
                    ),
                    (i, "extends"),
                    base,
                )
            )
        else:
            bases[i] = target
    reported = set()
    for start in sorted(bases):
        chain = [start]
        while chain[-1] in bases:
            nxt = bases[chain[-1]]
            if nxt in chain:
                cycle = chain[chain.index(nxt) :]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    closing = cycle[-1]
                    shown = " -> ".join(_pipeline_label(raw, k) for k in (*cycle, nxt))
                    errors.append(
                        _detail(
                            Problem(
                                f"circular extends: {shown}",
                                given=raw[closing].get("extends"),
                                allowed=(
                                    "a chain of extends that ends in a pipeline without 'extends'"
                                ),
                            ),
                            (closing, "extends"),
                            raw[closing].get("extends"),
                        )
                    )
                break
            chain.append(nxt)
    return errors


def _pipelines(value: Any, handler: Any, info: ValidationInfo) -> Any:
    if not isinstance(value, list):
        raise _custom(
            Problem(
                "pipelines must be an array of tables",
                given=value,
                allowed="[[pipelines]] sections",
            )
        )
    errors: List[InitErrorDetails] = []
    try:
        result = handler(value)
    except ValidationError as exc:
        errors.extend(_details(exc))
    errors.extend(_cross_checks(value, _scope(info)))
    if errors:
        _raise(errors)
    return result


# --- the document ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Linked:
    """What a valid document produces for the assembly."""

    settings: SettingsModel
    components: Dict[str, Dict[str, ComponentRef]]
    pipelines: Tuple[PipelineConfig, ...]
    #: plugin-owned top-level table name -> its validated model (only tables the file has)
    tables: Dict[str, Any] = dataclasses.field(default_factory=dict)


class DocumentModel(BaseModel):
    """A whole ``callpyback.toml`` (or ``[tool.callpyback]``).  Validate it with a
    :class:`Scope` as context; :attr:`linked` is then the configuration."""

    model_config = ConfigDict(extra="forbid")

    version: Any = 1
    settings: SettingsModel = Field(default_factory=dict, validate_default=True)
    observers: Annotated[Dict[str, ObserverTable], _section("observer")] = Field(
        default_factory=dict
    )
    error_handlers: Annotated[Dict[str, ErrorHandlerTable], _section("error_handler")] = Field(
        default_factory=dict
    )
    time_sources: Annotated[Dict[str, TimeSourceTable], _section("time_source")] = Field(
        default_factory=dict
    )
    variable_extractors: Annotated[Dict[str, ExtractorTable], _section("variable_extractor")] = (
        Field(default_factory=dict)
    )
    pipelines: Annotated[List[PipelineModel], WrapValidator(_pipelines)] = Field(
        default_factory=list
    )

    _linked: Optional[Linked] = PrivateAttr(default=None)

    @property
    def linked(self) -> Linked:
        assert self._linked is not None, "validate the document with a Scope first"
        return self._linked

    @model_validator(mode="before")
    @classmethod
    def _declare(cls, data: Any, info: ValidationInfo) -> Any:
        scope = _scope(info)
        if scope is not None and isinstance(data, dict):
            for section, kind in SECTIONS.items():
                table = data.get(section)
                if isinstance(table, dict):
                    scope.declared[kind] = frozenset(str(k) for k in table)
        return data

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        if isinstance(value, bool) or value not in VERSIONS:
            raise _custom(
                Problem(
                    "unsupported configuration version",
                    given=value,
                    allowed=", ".join(str(v) for v in VERSIONS),
                )
            )
        return value

    @field_validator("settings", mode="before")
    @classmethod
    def _settings(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, dict):
            raise _custom(
                Problem(
                    "[settings] must be a table",
                    given=value,
                    allowed=", ".join(SettingsModel.model_fields),
                )
            )
        scope = _scope(info)
        return _merge_settings(value, scope) if scope is not None else value

    @model_validator(mode="after")
    def _link(self, info: ValidationInfo) -> DocumentModel:
        self._linked = _link(self)
        for name in type(self).plugin_tables:
            value = getattr(self, name, None)
            if value is not None:
                self._linked.tables[name] = value
        return self

    #: the plugin-owned tables this (generated) model knows (see :func:`document_model`)
    plugin_tables: ClassVar[Tuple[str, ...]] = ()


_DOCUMENT_MODELS: Dict[Tuple[Tuple[str, Any], ...], type] = {}


def document_model(registry: Any) -> Type[DocumentModel]:
    """The document model for ``registry``: :class:`DocumentModel` plus one optional field per
    top-level table a plugin owns (``registry`` kind ``"table"``), so that pydantic validates
    ``[web]`` or ``[state]`` with the plugin's model, and an unknown table is still an error
    with a did-you-mean over every known key."""
    specs = [] if registry is None else [registry.get("table", n) for n in registry.names("table")]
    key = tuple((spec.name, spec.options) for spec in specs)
    model = _DOCUMENT_MODELS.get(key)
    if model is None:
        if not specs:
            model = DocumentModel
        else:
            fields: Dict[str, Any] = {spec.name: (Optional[spec.options], None) for spec in specs}
            model = create_model("DocumentModel", __base__=DocumentModel, **fields)
            model.plugin_tables = tuple(spec.name for spec in specs)
        _DOCUMENT_MODELS[key] = model
    return model


def _link(doc: DocumentModel) -> Linked:
    components: Dict[str, Dict[str, ComponentRef]] = {}
    for section, kind in SECTIONS.items():
        tables: Dict[str, ComponentTable] = getattr(doc, section)
        components[kind] = {
            name: ComponentRef(kind, t.type, t.options, name, (section, name))
            for name, t in tables.items()
        }

    def ref(kind: str, value: Any, path: KeyPath) -> ComponentRef:
        if isinstance(value, str):
            named = components[kind].get(value)
            return named if named is not None else ComponentRef(kind, value, {}, None, path)
        return ComponentRef(kind, value.type, value.options, None, path)

    settings = doc.settings
    defaults: Dict[str, Optional[ComponentRef]] = {}
    for key in ("time_source", "variable_extractor"):
        value = getattr(settings, key)
        defaults[key] = None if value is None else ref(key, value, ("settings", key))

    own: List[Dict[str, Any]] = []
    for i, p in enumerate(doc.pipelines):
        base: KeyPath = ("pipelines", i)
        given = p.model_fields_set
        parts: Dict[str, Any] = {}
        for key, kind in (("observers", "observer"), ("error_handlers", "error_handler")):
            values = getattr(p, key)
            if key in given and values is not None:
                parts[key] = tuple(ref(kind, v, (*base, key, j)) for j, v in enumerate(values))
        for key in ("time_source", "variable_extractor"):
            value = getattr(p, key)
            if key in given and value is not None:
                parts[key] = ref(key, value, (*base, key))
        for key in ("variables", "exception_classes"):
            value = getattr(p, key)
            if key in given and value is not None:
                parts[key] = tuple(value)
        if "default_return" in given:
            parts["default_return"] = p.default_return
        for key in ("max_observer_failures", "enable_async_observers"):
            value = getattr(p, key)
            if key in given and value is not None:
                parts[key] = value
        own.append(parts)

    # ``extends`` (the validator of ``pipelines`` has ruled out unknown names and cycles).
    by_name = {p.name: i for i, p in enumerate(doc.pipelines) if p.name}
    effective: Dict[int, Dict[str, Any]] = {}

    def resolve(i: int) -> Dict[str, Any]:
        if i not in effective:
            parts = dict(own[i])
            base_name = doc.pipelines[i].extends
            if base_name is not None:
                inherited = resolve(by_name[base_name])
                for key in INHERITED:
                    if key not in parts and key in inherited:
                        parts[key] = inherited[key]
            effective[i] = parts
        return effective[i]

    problems: List[InitErrorDetails] = []
    pipelines: List[PipelineConfig] = []
    for i, p in enumerate(doc.pipelines):
        parts = resolve(i)
        if parts.get("exception_classes") and "default_return" not in parts:
            problems.append(
                _detail(
                    Problem(
                        "exception_classes only says what default_return recovers, and no "
                        "default_return is set",
                        given=list(parts["exception_classes"]),
                        allowed="add default_return = VALUE, or use an error handler instead",
                    ),
                    ("pipelines", i, "exception_classes"),
                    list(parts["exception_classes"]),
                )
            )
        pipelines.append(
            PipelineConfig(
                index=i,
                name=p.name,
                match=tuple(p.match),
                exclude=tuple(p.exclude),
                description=p.description,
                extends=p.extends,
                enabled=p.enabled,
                observers=parts.get("observers", ()),
                error_handlers=parts.get("error_handlers", ()),
                time_source=parts.get("time_source") or defaults["time_source"],
                variable_extractor=parts.get("variable_extractor")
                or defaults["variable_extractor"],
                variables=parts.get("variables", ()),
                exception_classes=parts.get("exception_classes", ()),
                default_return=parts.get("default_return", MISSING),
                max_observer_failures=parts.get("max_observer_failures"),
                enable_async_observers=parts.get("enable_async_observers"),
            )
        )
    if problems:
        _raise(problems)
    return Linked(settings, components, tuple(pipelines))


# --- registry.create(): a ConfigError that older code can still catch as pydantic's -------------


class ComponentOptionsError(ConfigError, ValidationError):
    """Bad options given to ``Registry.create`` / ``ComponentSpec.create``.

    A :class:`ConfigError` (its message and ``problems`` name each option, the value given,
    what is allowed and the component type), and also pydantic's ``ValidationError``, whose
    ``errors()`` it keeps, so that code written against earlier releases keeps working.
    """

    def __init__(self, *args: Any) -> None:
        # pydantic builds the instance (from_exception_data); options_error() fills it in.
        pass

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def __reduce__(self) -> Any:
        # Rebuilt from the same pydantic error details (kept when it was made), so it comes
        # back as itself: a ConfigError that is also pydantic's ValidationError.
        notes = getattr(self, "__notes__", None)
        return (
            _rebuild_options_error,
            (
                self.problems,
                self.source,
                getattr(self, "_title", ""),
                getattr(self, "_details", []),
            ),
            {"__notes__": list(notes)} if notes is not None else None,
        )


def _error_details(cause: Any) -> List[Any]:
    return [
        InitErrorDetails(type=e["type"], loc=e["loc"], input=e.get("input"), ctx=e.get("ctx", {}))
        for e in cause.errors(include_url=False)
    ]


def _make_options_error(
    problems: Sequence[Problem], source: str, title: str, details: List[Any]
) -> ConfigError:
    try:
        error = ComponentOptionsError.from_exception_data(title, details)
    except Exception:
        error = None
    if not isinstance(error, ComponentOptionsError):
        return ConfigError(problems, source)
    ConfigError.__init__(error, problems, source)
    error._title = title  # type: ignore[attr-defined]
    error._details = details  # type: ignore[attr-defined]
    return error


def _rebuild_options_error(
    problems: Sequence[Problem], source: str, title: str, details: List[Any]
) -> ConfigError:
    return _make_options_error(problems, source, title, details)


def options_error(problems: Sequence[Problem], source: str, cause: Any) -> ConfigError:
    """The error for options that failed their model: a ComponentOptionsError when pydantic can
    rebuild its own error from ``cause``, else a plain ConfigError (same message and problems)."""
    try:
        details = _error_details(cause)
    except Exception:
        return ConfigError(problems, source)
    return _make_options_error(problems, source, cause.title, details)

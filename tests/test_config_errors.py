"""Bad configurations: every problem reported, located (file, line, key path), nothing applied."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import callpyback
from callpyback.config import ConfigError, load_config, load_text
from callpyback.config._toml import Locator
from callpyback.errors import ConfigurationError
from tests.config_helpers import make_registry, write

BAD = Path(__file__).parent / "configs" / "bad"
CASES = sorted(BAD.glob("*.toml"))


def _expectations(path: Path) -> list[str]:
    return [
        line.split("# expect:", 1)[1].strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.startswith("# expect:")
    ]


def test_corpus_is_large_enough() -> None:
    """The issue asks for at least 30 malformed configs, each with its expected text."""
    assert len(CASES) >= 30
    assert all(_expectations(p) for p in CASES)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_bad_config_reports_expected_error(path: Path) -> None:
    """Each malformed config raises one ConfigError whose text contains every expectation."""
    with pytest.raises(ConfigError) as info:
        load_text(
            path.read_text(encoding="utf-8"), file="cfg", registry=make_registry(), env={"SET": "x"}
        )
    text = str(info.value)
    for expected in _expectations(path):
        assert expected in text, f"{expected!r} not in:\n{text}"
    assert info.value.problems
    for problem in info.value.problems:
        assert problem.file == "cfg"


def test_config_error_is_a_configuration_and_value_error() -> None:
    """Generic ``except ValueError`` and ``except ConfigurationError`` both catch it."""
    assert issubclass(ConfigError, ConfigurationError)
    assert issubclass(ConfigError, ValueError)
    assert callpyback.ConfigError is ConfigError


def test_every_problem_is_listed_not_just_the_first(tmp_path: Path) -> None:
    """Problems in different sections and pipelines are all reported, in line order."""
    path = write(
        tmp_path,
        """
        [settings]
        enabled = "nope"

        [observers.a]
        type = "nope"

        [[pipelines]]
        match = ["ok"]
        observers = ["a", "b"]

        [[pipelines]]
        match = ["re:("]
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, registry=make_registry(), env={})
    keys = [p.key for p in info.value.problems]
    assert keys == [
        "settings.enabled",
        "observers.a.type",
        "pipelines[0].observers[1]",
        "pipelines[1].match[0]",
    ]
    assert [p.line for p in info.value.problems] == [2, 5, 9, 12]
    assert all(p.file == str(path) for p in info.value.problems)


def test_problem_carries_structured_fields() -> None:
    """given, allowed and suggestions are available to tools, not only in the text."""
    with pytest.raises(ConfigError) as info:
        load_text(
            '[observers.x]\ntype = "timng"\n', file="f.toml", registry=make_registry(), env={}
        )
    (problem,) = info.value.problems
    assert problem.path == ("observers", "x", "type")
    assert problem.line == 2
    assert problem.given == "timng"
    assert problem.suggestions == ["timing"]
    assert "recording" in (problem.allowed or "")
    assert problem.as_dict()["key"] == "observers.x.type"


def test_nothing_is_built_from_a_failed_config(tmp_path: Path) -> None:
    """A factory is never called when validation fails anywhere in the file."""
    from callpyback._registry import ComponentSpec

    built = []
    registry = make_registry()
    registry.add(ComponentSpec("observer", "spy", lambda: built.append(1) or object(), None))
    with pytest.raises(ConfigError):
        load_text(
            '[[pipelines]]\nmatch = ["a"]\nobservers = ["spy"]\n[[pipelines]]\nmatch = []\n',
            registry=registry,
            env={},
        )
    assert built == []


def test_error_pickles_with_its_problems() -> None:
    """A ConfigError crosses process boundaries (multiprocessing) intact."""
    import pickle

    with pytest.raises(ConfigError) as info:
        load_text("version = 9\n", file="x.toml", registry=make_registry(), env={})
    again = pickle.loads(pickle.dumps(info.value))
    assert str(again) == str(info.value)
    assert again.problems[0].line == 1


def test_missing_explicit_file_and_env_file(tmp_path: Path) -> None:
    """A path that does not exist is an error naming it (and the variable that gave it)."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", registry=make_registry(), env={})
    with pytest.raises(ConfigError, match="set by CALLPYBACK_CONFIG"):
        load_config(
            registry=make_registry(), env={"CALLPYBACK_CONFIG": str(tmp_path / "x")}, cwd=tmp_path
        )


def test_undecodable_file(tmp_path: Path) -> None:
    """A file that is not UTF-8 is a ConfigError, not a UnicodeDecodeError."""
    path = tmp_path / "callpyback.toml"
    path.write_bytes(b"version = 1\nname = '\xff\xfe'\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(path, registry=make_registry(), env={})


def test_settings_error_from_environment_names_the_variable() -> None:
    """A bad CALLPYBACK_* value is reported against the variable, not the file."""
    with pytest.raises(ConfigError) as info:
        load_text(
            "",
            file="f.toml",
            registry=make_registry(),
            env={"CALLPYBACK_MAX_OBSERVER_FAILURES": "lots"},
        )
    (problem,) = info.value.problems
    assert problem.file == "<environment CALLPYBACK_MAX_OBSERVER_FAILURES>"
    assert "valid integer" in problem.message


def test_unknown_explicit_setting() -> None:
    """``load_config(settings={...})`` with a misspelt key says so, with a suggestion."""
    with pytest.raises(ConfigError) as info:
        load_text("", registry=make_registry(), env={}, settings={"enabeld": False})
    assert info.value.problems[0].suggestions == ["enabled"]
    assert info.value.problems[0].file == "<argument>"


# --- the locator ---------------------------------------------------------------------------
def test_locator_follows_tables_arrays_and_inline_tables() -> None:
    """Key paths map to the line where the key, element or table is written."""
    text = (
        "version = 1\n"  # 1
        "[observers.audit]\n"  # 2
        'type = "x"\n'  # 3
        "[[pipelines]]\n"  # 4
        "match = [\n"  # 5
        '  "a",\n'  # 6
        '  "b",  # comment ] with bracket\n'  # 7
        "]\n"  # 8
        'observers = ["x", {type = "t", k = 1}]\n'  # 9
        "[[pipelines]]\n"  # 10
        'doc = """multi\n'  # 11
        "[[not a table]]\n"  # 12
        '"""\n'  # 13
        "a.b = 1\n"  # 14
        "'quoted key' = 2\n"  # 15
    )
    loc = Locator(text)
    assert loc.line(("version",)) == 1
    assert loc.line(("observers", "audit", "type")) == 3
    assert loc.line(("pipelines", 0)) == 4
    assert loc.line(("pipelines", 0, "match", 1)) == 7
    assert loc.line(("pipelines", 0, "observers", 1, "k")) == 9
    assert loc.line(("pipelines", 1)) == 10
    assert loc.line(("pipelines", 1, "a", "b")) == 14
    assert loc.line(("pipelines", 1, "quoted key")) == 15
    # unknown paths fall back to the nearest ancestor that appears in the file
    assert loc.line(("pipelines", 1, "nothing", 3)) == 10
    assert loc.line(("missing",)) is None


def test_locator_under_pyproject_prefix() -> None:
    """In pyproject.toml, paths are relative to [tool.callpyback]."""
    text = (
        '[project]\nname = "x"\n\n[tool.callpyback]\nversion = 1\n'
        '[[tool.callpyback.pipelines]]\nmatch = ["a"]\n'
    )
    loc = Locator(text, ("tool", "callpyback"))
    assert loc.line(("version",)) == 5
    assert loc.line(("pipelines", 0, "match")) == 7


# --- fuzzing -------------------------------------------------------------------------------
_keys = st.sampled_from(
    [
        "version",
        "settings",
        "observers",
        "error_handlers",
        "time_sources",
        "variable_extractors",
        "pipelines",
        "match",
        "exclude",
        "type",
        "name",
        "extends",
        "enabled",
        "threshold",
        "attempts",
        "variables",
        "default_return",
        "exception_classes",
        "max_observer_failures",
        "time_source",
        "variable_extractor",
        "label",
        "x",
    ]
)
_scalars = st.one_of(
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False, width=32),
    st.sampled_from(
        [
            "shop",
            "re:(",
            "re:a.*",
            "timing",
            "retry",
            "mock",
            "a..b",
            "${X}",
            "${X:-1}",
            "*",
            "shop:Cart.*",
            "ValueError",
            "",
        ]
    ),
    st.text(max_size=8),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=4)),
    max_leaves=20,
)
_documents = st.dictionaries(_keys, _values, max_size=6)


def _to_toml(doc: dict) -> str:
    from callpyback.cli._fmt import dump_toml

    return dump_toml(doc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents)
def test_random_documents_raise_only_config_error(doc: dict) -> None:
    """Whatever the document, loading returns a Config or raises ConfigError, nothing else."""
    try:
        text = _to_toml(doc)
    except Exception:
        return  # a shape the test's own writer cannot express
    try:
        load_text(text, file="fuzz.toml", registry=make_registry(), env={})
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.message


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("[]{}=\",.'#\n abc123_-:$")), max_size=80))
def test_random_text_raises_only_config_error(text: str) -> None:
    """Arbitrary text, mostly invalid TOML, never escapes as anything but ConfigError."""
    try:
        load_text(text, file="fuzz.toml", registry=make_registry(), env={})
    except ConfigError as exc:
        assert exc.problems


def test_errors_do_not_print_secret_values() -> None:
    """A bad value under a secret-looking key, or read from a secret variable, shows as ***."""
    text = '[error_handlers.net]\ntype = "retry"\nattempts = "${DB_PASSWORD}"\napi_token = 5\n'
    with pytest.raises(ConfigError) as info:
        load_text(text, registry=make_registry(), env={"DB_PASSWORD": "hunter2"})
    message = str(info.value)
    assert "hunter2" not in message
    assert [p.given for p in info.value.problems] == ["***", "***"]


@pytest.mark.parametrize("depth", [40, 5000])
def test_deeply_nested_document_is_a_clear_error(depth: int) -> None:
    """Nesting deeper than the limit is one located problem, never a RecursionError."""
    text = "x = " + "[" * depth + "]" * depth + "\n"
    with pytest.raises(ConfigError) as info:
        load_text(text, file="deep.toml", registry=make_registry(), env={})
    (problem,) = info.value.problems
    assert "nested more than 32 levels deep" in problem.message
    assert problem.file == "deep.toml"
    with pytest.raises(ConfigError, match="nested more than 32"):
        nested: list = [1]
        for _ in range(40):
            nested = [nested]
        callpyback.configure({"x": nested}, registry=make_registry(), env={})


# --- every problem, once, saying where and in what -------------------------------------------


def test_every_bad_exception_name_of_a_list_is_reported_in_one_run() -> None:
    """Three bad names in an exceptions list are three problems, each at its index, with no
    "Value error, " prefix from pydantic."""
    text = (
        '[error_handlers.net]\ntype = "retry"\nattempts = 2\n'
        'exceptions = ["ConectionError", "KeyError", "TimeotError", "not a name"]\n'
    )
    with pytest.raises(ConfigError) as info:
        load_text(text, file="f.toml", registry=callpyback.plugins.get_registry(), env={})
    problems = info.value.problems
    assert [p.key for p in problems] == [
        "error_handlers.net.exceptions[0]",
        "error_handlers.net.exceptions[2]",
        "error_handlers.net.exceptions[3]",
    ]
    assert all(p.line == 4 for p in problems)
    assert "did you mean 'ConnectionError'" in problems[0].message
    assert not any(p.message.startswith(("Value error", "Assertion failed")) for p in problems)
    assert "Value error, " not in str(info.value)


def test_an_unset_variable_is_one_problem_not_two() -> None:
    """The unsubstituted text is not reported again as a bad value of the option."""
    with pytest.raises(ConfigError) as info:
        load_text(
            '[error_handlers.net]\ntype = "retry"\nattempts = "${UNDEFINED_RETRIES}"\n',
            registry=make_registry(),
            env={},
        )
    (problem,) = info.value.problems
    assert "'UNDEFINED_RETRIES' is not set" in problem.message


def test_a_bad_option_value_names_the_component_type() -> None:
    """Like an unknown option key, a bad option value says whose option it is."""
    with pytest.raises(ConfigError) as info:
        load_text(
            '[observers.t]\ntype = "timing"\nthreshold = -1\n',
            file="f.toml",
            registry=make_registry(),
            env={},
        )
    (problem,) = info.value.problems
    assert problem.component == "observer type 'timing'"
    assert (
        "f.toml:3: observers.t.threshold: Input should be greater than or equal to 0 "
        "(given: -1), in the options of observer type 'timing'"
    ) in str(info.value)


def test_problems_of_different_kinds_in_one_pipeline_are_all_reported() -> None:
    """A wrong type, a bad pattern, an unknown reference and a bad extends in one pipeline:
    four problems, not the first one and then the next run's."""
    text = (
        '[[pipelines]]\nname = "a"\nextends = "nope"\nmatch = ["re:("]\n'
        'observers = ["metrix"]\nmax_observer_failures = "x"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_text(text, registry=make_registry(), env={})
    assert sorted(p.key for p in info.value.problems) == [
        "pipelines[0].extends",
        "pipelines[0].match[0]",
        "pipelines[0].max_observer_failures",
        "pipelines[0].observers[0]",
    ]

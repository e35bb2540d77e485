"""The import hook: real modules written to tmp_path and really imported, with a tiny selector."""

from __future__ import annotations

import asyncio
import functools
import importlib
import importlib.resources
import inspect
import logging
import pickle
import pkgutil
import sys
import textwrap
import threading

import pytest

import callpyback
import callpyback.autoinstrument as auto
from callpyback import CallPyBack, instrumented_by
from callpyback.autoinstrument import InstrumentationWarning
from callpyback.autoinstrument._finder import InstrumentingFinder, InstrumentingLoader
from callpyback.errors import ConfigurationError
from tests.autoinstrument_support import ROOT, PatternSelector, packages_in, run_python


@pytest.fixture
def packages(tmp_path):
    yield from packages_in(tmp_path)


@pytest.fixture(autouse=True)
def _no_hook_left():
    yield
    auto.uninstall()


SHAPES = """
import functools

def plain(x):
    return x + 1

async def coro(x):
    return x * 2

def gen(n):
    yield from range(n)

async def agen(n):
    for i in range(n):
        yield i

class Shop:
    def method(self, x):
        return ("method", x)

    @classmethod
    def klass(cls):
        return cls.__name__

    @staticmethod
    def static(y):
        return -y

    @property
    def prop(self):
        return "prop"

    class Inner:
        def deep(self):
            return "deep"

half = functools.partial(plain, 1)

@functools.singledispatch
def show(obj):
    return "object"

@show.register(int)
def _show_int(obj):
    return "int"

square = lambda v: v * v
"""


def _import(name: str):
    return importlib.import_module(name)


def test_every_shape_is_wrapped_on_import_and_behaves_the_same(packages):
    """Functions, methods, class/static methods, nested classes, coroutines and generators."""
    packages.write("{p}shapes.py", SHAPES)
    name = packages.name("shapes")
    sel = PatternSelector(name)
    auto.install(sel)
    m = _import(name)

    assert m.plain(1) == 2
    assert asyncio.run(m.coro(3)) == 6
    assert list(m.gen(3)) == [0, 1, 2]

    async def drain():
        return [i async for i in m.agen(2)]

    assert asyncio.run(drain()) == [0, 1]
    assert m.Shop().method(5) == ("method", 5)
    assert m.Shop.klass() == "Shop"
    assert m.Shop().klass() == "Shop"
    assert m.Shop.static(4) == -4
    assert m.Shop.Inner().deep() == "deep"
    assert sel.calls == [
        f"{name}:plain",
        f"{name}:coro",
        f"{name}:gen",
        f"{name}:agen",
        f"{name}:Shop.method",
        f"{name}:Shop.klass",
        f"{name}:Shop.klass",
        f"{name}:Shop.static",
        f"{name}:Shop.Inner.deep",
    ]
    # descriptors read from the class __dict__ keep their type
    assert isinstance(m.Shop.__dict__["klass"], classmethod)
    assert isinstance(m.Shop.__dict__["static"], staticmethod)
    assert instrumented_by(m.Shop.__dict__["klass"].__func__) is sel.decorator
    # instrumented in place: the same plain functions, with the original's identity markers
    assert inspect.isfunction(m.plain) and m.plain.__code__.co_name == "plain"
    assert inspect.getsource(m.plain).startswith("def plain")
    assert inspect.iscoroutinefunction(m.coro)
    assert inspect.isgeneratorfunction(m.gen)
    assert inspect.isasyncgenfunction(m.agen)
    assert str(inspect.signature(m.Shop.method)) == "(self, x)"
    assert m.Shop.method.__qualname__ == "Shop.method"


def test_properties_partials_and_singledispatch_have_documented_behaviour(packages):
    """Properties and partials are skipped with a reason; singledispatch is wrapped."""
    packages.write("{p}shapes.py", SHAPES)
    name = packages.name("shapes")
    sel = PatternSelector(name)
    auto.install(sel)
    m = _import(name)

    assert m.Shop().prop == "prop"
    assert isinstance(m.Shop.__dict__["prop"], property)
    assert isinstance(m.half, functools.partial)
    skipped = {e.target: e.reason for e in auto.report().skipped}
    assert "property" in skipped[f"{name}:Shop.prop"]
    assert "functools.partial" in skipped[f"{name}:half"]
    # singledispatch: the dispatcher is wrapped; the registry is shared, so late registration works
    assert m.show("x") == "object" and m.show(3) == "int"
    m.show.register(float, lambda obj: "float")
    assert m.show(1.5) == "float"
    assert sel.calls.count(f"{name}:show") == 3
    # lambdas are never wrapped (no name to find them by, not picklable)
    assert instrumented_by(m.square) is None


def test_functions_imported_from_another_module_are_not_wrapped_twice(packages):
    """``from a import f`` in b gets a's wrapper; one call is observed once."""
    packages.write("{p}a.py", "def f(x):\n    return x\n")
    packages.write("{p}b.py", "from {p}a import f\n\ndef g(x):\n    return f(x)\n")
    a_name, b_name = packages.name("a"), packages.name("b")
    sel = PatternSelector(f"{packages.prefix}*")
    auto.install(sel)
    a, b = _import(a_name), _import(b_name)
    assert b.f is a.f
    b.g(1)
    assert sel.calls == [f"{a_name}:f", f"{b_name}:g"]


def test_reload_instruments_the_new_functions_without_double_wrapping(packages):
    """importlib.reload: fresh functions get one layer; uninstall restores the reloaded ones."""
    packages.write(
        "{p}mod.py", "def f(x):\n    return x\n\nclass C:\n    def m(self):\n        return 1\n"
    )
    name = packages.name("mod")
    sel = PatternSelector(name)
    auto.install(sel)
    m = _import(name)
    first = m.f
    importlib.reload(m)
    assert m.f is not first
    assert instrumented_by(m.f) is sel.decorator
    assert m.f(1) == 1 and m.C().m() == 1
    assert sel.calls == [f"{name}:f", f"{name}:C.m"]  # one layer: each call observed once
    reloaded = m.f
    auto.uninstall()
    assert m.f is reloaded and instrumented_by(reloaded) is None
    m.f(1)
    assert sel.calls == [f"{name}:f", f"{name}:C.m"]


def test_uninstall_restores_identity_of_every_function_and_descriptor(packages):
    """Every function and class __dict__ entry stays the same object; uninstall gives each its
    original code back, aliases included."""
    packages.write("{p}shapes.py", SHAPES)
    name = packages.name("shapes")
    sel = PatternSelector(name)
    auto.install(sel)
    m = _import(name)
    objects = {key: getattr(m, key) for key in ("plain", "coro", "gen")}
    alias = m.plain
    klass = m.Shop.__dict__["klass"]
    result = auto.uninstall()
    assert result.restored >= 10 and result.kept == ()
    for key, obj in objects.items():
        assert getattr(m, key) is obj and instrumented_by(obj) is None
    assert m.Shop.__dict__["klass"] is klass
    assert alias(1) == 2 and sel.calls == []  # an alias taken while installed is not observed
    assert instrumented_by(m.Shop.__dict__["klass"].__func__) is None
    assert instrumented_by(m.Shop.__dict__["method"]) is None
    assert instrumented_by(m.Shop.Inner.__dict__["deep"]) is None
    assert InstrumentingFinder not in {type(f) for f in sys.meta_path}
    # modules imported after uninstall are left alone
    packages.write("{p}later.py", "def f():\n    return 1\n")
    assert instrumented_by(_import(packages.name("later")).f) is None


def test_uninstall_leaves_a_layer_someone_else_stacked_on_ours(packages):
    """A user's patch on top of an instrumented function stays; ours underneath is undone."""
    packages.write("{p}mod.py", "def f(x):\n    return x\n\ndef g(x):\n    return x\n")
    name = packages.name("mod")
    sel = PatternSelector(name)
    auto.install(sel)
    m = _import(name)

    def theirs(x):
        return ours(x) * 10

    ours = m.f
    m.f = theirs
    g = m.g
    result = auto.uninstall()
    assert m.f is theirs and m.g is g and result.kept == ()
    assert m.f(1) == 10 and instrumented_by(ours) is None and sel.calls == []


def test_wrapped_functions_and_methods_pickle_by_reference(packages):
    """A wrapper is a plain function reachable by its qualified name."""
    packages.write("{p}mod.py", SHAPES)
    name = packages.name("mod")
    auto.install(PatternSelector(name))
    m = _import(name)
    for obj in (m.plain, m.Shop.method, m.Shop.Inner.deep, m.coro):
        assert instrumented_by(obj) is not None
        assert pickle.loads(pickle.dumps(obj)) is obj
    restored = pickle.loads(pickle.dumps(m.Shop()))
    assert restored.method(1) == ("method", 1)


def test_resources_and_get_data_work_on_an_instrumented_package(packages):
    """The loader is forwarded, and __loader__/__spec__.loader stay the real one."""
    packages.write("{p}res/__init__.py", "def f():\n    return 1\n")
    packages.write("{p}res/data.txt", "hello")
    name = packages.name("res")
    sel = PatternSelector(name)
    auto.install(sel)
    m = _import(name)
    assert instrumented_by(m.f) is not None
    assert importlib.resources.files(name).joinpath("data.txt").read_text() == "hello"
    assert pkgutil.get_data(name, "data.txt") == b"hello"
    assert type(m.__loader__).__name__ == "SourceFileLoader"
    assert m.__spec__.loader is m.__loader__
    assert inspect.getsource(m.f).startswith("def f")


def test_the_wrapping_loader_forwards_every_attribute(packages):
    """What a finder hands out while the module is not yet executed proxies the real loader."""
    packages.write("{p}res/__init__.py", "")
    packages.write("{p}res/data.txt", "hi")
    name = packages.name("res")
    auto.install(PatternSelector(name))
    spec = importlib.util.find_spec(name)
    assert isinstance(spec.loader, InstrumentingLoader)
    real = spec.loader._cpb_loader
    assert spec.loader.is_package(name) is True
    assert spec.loader.get_filename(name) == real.get_filename(name)
    assert spec.loader.path == real.path
    assert spec.loader.get_data(str(packages.root / f"{name}/data.txt")) == b"hi"
    assert spec.loader.get_resource_reader(name) is not None
    assert "get_source" in dir(spec.loader)


def test_namespace_packages_import_and_their_modules_are_instrumented(packages):
    """A directory without __init__ has no loader to wrap; its modules are instrumented."""
    packages.write("{p}ns/mod.py", "def f():\n    return 'ns'\n")
    ns_name = packages.name("ns")
    sel = PatternSelector(ns_name)
    auto.install(sel)
    mod = _import(f"{ns_name}.mod")
    assert mod.f() == "ns"
    assert sel.calls == [f"{ns_name}.mod:f"]
    assert sys.modules[ns_name].__spec__.origin in (None, "namespace")


def test_module_getattr_is_never_triggered_by_scanning(packages):
    """Scanning reads module.__dict__: a module __getattr__ is not called, on import or retrofit."""
    src = """
    CALLS = []

    def __getattr__(name):
        CALLS.append(name)
        raise AttributeError(name)

    def f():
        return 1
    """
    packages.write("{p}lazy.py", src)
    packages.write("{p}early.py", src)
    early = _import(packages.name("early"))
    auto.install(PatternSelector(f"{packages.prefix}*"))  # retrofits early
    lazy = _import(packages.name("lazy"))
    assert instrumented_by(lazy.f) is not None and instrumented_by(early.f) is not None
    assert lazy.CALLS == [] and early.CALLS == []
    auto.uninstall()
    assert lazy.CALLS == [] and early.CALLS == []


def test_a_module_that_fails_to_import_raises_its_own_error_unchanged(packages):
    """The hook does not wrap, chain or swallow the module's exception."""
    packages.write("{p}broken.py", "def f():\n    pass\n\nraise LookupError('broken at import')\n")
    name = packages.name("broken")
    auto.install(PatternSelector(name))
    with pytest.raises(LookupError, match="broken at import") as info:
        _import(name)
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert name not in sys.modules
    assert auto.report().wrapped == []


def test_broken_instrumentation_is_one_warning_and_the_import_goes_on(packages):
    """A decorator that fails for one function: that function stays original, others are wrapped."""
    packages.write("{p}mod.py", "def good():\n    return 1\n\ndef bad():\n    return 2\n")
    name = packages.name("mod")
    ok = CallPyBack(observers=[lambda context: None])

    class Picky:
        def __call__(self, func):
            if func.__name__ == "bad":
                raise RuntimeError("cannot wrap this one")
            return ok(func)

    auto.install(PatternSelector(name, decorator=Picky()))
    with pytest.warns(InstrumentationWarning) as caught:
        m = _import(name)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert f"{name}:bad" in message and "cannot wrap this one" in message
    assert m.bad() == 2 and instrumented_by(m.bad) is None
    assert instrumented_by(m.good) is not None
    assert [e.target for e in auto.report().failed] == [f"{name}:bad"]


def test_a_selector_that_raises_never_breaks_an_import(packages):
    """may_match_module raising: the hook steps aside."""
    packages.write("{p}mod.py", "def f():\n    return 1\n")

    class Raising(PatternSelector):
        def may_match_module(self, module):
            if module.startswith(packages.prefix):
                raise RuntimeError("selector bug")
            return False

    auto.install(Raising())
    assert _import(packages.name("mod")).f() == 1


def test_retrofit_wraps_imported_modules_and_patches_aliases(packages, caplog):
    """Modules imported before install() are instrumented late, in place: aliases taken
    earlier (``from a import f as alias``) are the observed object itself."""
    packages.write("{p}a.py", "def f(x):\n    return x\n")
    packages.write("{p}b.py", "from {p}a import f as alias\n")
    a_name, b_name = packages.name("a"), packages.name("b")
    a, b = _import(a_name), _import(b_name)
    original = a.f
    sel = PatternSelector(a_name)
    with caplog.at_level(logging.INFO, logger="callpyback.autoinstrument"):
        auto.install(sel)
    assert a.f is original and b.alias is original
    b.alias(1)
    assert sel.calls == [f"{a_name}:f"]
    report = auto.report()
    assert [e.target for e in report.wrapped] == [f"{a_name}:f"] and report.wrapped[0].late
    assert report.aliases_patched == []  # nothing to patch
    lines = [r.getMessage() for r in caplog.records if "retrofit" in r.getMessage()]
    assert len(lines) == 1 and a_name in lines[0]
    assert "[retrofit]" in auto.explain(f"{a_name}:f")
    auto.uninstall()
    b.alias(1)
    assert a.f is original and sel.calls == [f"{a_name}:f"]


def test_an_alias_held_where_we_never_write_is_observed_too(packages):
    """An alias held by a standard-library module (which the hook never writes into) is the
    instrumented object itself: calls through it are observed, with nothing to report."""
    import colorsys

    packages.write("{p}a.py", "def f(x):\n    return x\n")
    a_name = packages.name("a")
    a = _import(a_name)
    colorsys.__dict__["_cpbt_alias"] = a.f
    try:
        sel = PatternSelector(a_name)
        auto.install(sel)
        assert colorsys.__dict__["_cpbt_alias"] is a.f
        colorsys.__dict__["_cpbt_alias"](1)
        assert sel.calls == [f"{a_name}:f"]
        assert auto.report().aliases_reported == []
    finally:
        del colorsys.__dict__["_cpbt_alias"]


def test_a_selector_handing_out_another_decorator_wraps_the_classic_way(packages):
    """A decorator that is not a CallPyBack: its wrapper replaces the module attribute, and
    aliases taken earlier are patched (retrofit) or reported, and restored at uninstall."""
    packages.write("{p}a.py", "def f(x):\n    return x\n")
    packages.write("{p}b.py", "from {p}a import f as alias\n")
    a_name, b_name = packages.name("a"), packages.name("b")
    a, b = _import(a_name), _import(b_name)
    original = a.f
    seen = []

    def deco(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            seen.append(func.__name__)
            return func(*args, **kwargs)

        return wrapper

    auto.install(PatternSelector(a_name, decorator=deco))
    assert a.f is not original and a.f.__wrapped__ is original and b.alias is a.f
    b.alias(1)
    assert seen == ["f"]
    assert [(e.target, e.where) for e in auto.report().aliases_patched] == [
        (f"{a_name}:f", f"{b_name}:alias")
    ]
    auto.uninstall()
    assert a.f is original and b.alias is original


def test_callpyback_itself_is_never_instrumented(packages):
    """Even a selector matching callpyback's modules leaves them alone."""
    sel = PatternSelector("callpyback", "callpyback_*")
    auto.install(sel)
    import callpyback.time_sources as ts

    assert instrumented_by(ts.SystemTimeSource.now) is None
    assert auto.report().wrapped == []
    assert sel.asked == []


def test_wildcards_skip_the_stdlib_but_an_explicit_pattern_instruments_it():
    """``*`` leaves the standard library alone; a pattern naming a stdlib module is honoured."""
    code = r"""
import sys, fnmatch, types
sys.path.insert(0, sys.argv[1])
from tests.autoinstrument_support import PatternSelector
import callpyback.autoinstrument as auto
from callpyback import instrumented_by
sys.modules.pop("colorsys", None)
sel = PatternSelector("*")
auto.install(sel)
import colorsys
print("wildcard", instrumented_by(colorsys.rgb_to_hsv) is not None)
print("callpyback", any(e.target.startswith("callpyback") for e in auto.report().wrapped))
auto.uninstall()
sys.modules.pop("colorsys", None)
sel = PatternSelector("colorsys")
auto.install(sel)
import colorsys
print("explicit", instrumented_by(colorsys.rgb_to_hsv) is not None)
colorsys.rgb_to_hsv(0.1, 0.2, 0.3)
print(sel.calls)
"""
    proc = run_python(["-c", code, str(ROOT)])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "wildcard False",
        "callpyback False",
        "explicit True",
        "['colorsys:rgb_to_hsv']",
    ]


def test_kill_switch_installs_nothing(packages, monkeypatch):
    """CALLPYBACK_DISABLED=1: install() is a no-op and imports are untouched."""
    monkeypatch.setenv("CALLPYBACK_DISABLED", "1")
    packages.write("{p}mod.py", "def f():\n    return 1\n")
    assert auto.install(PatternSelector(packages.name("mod"))) is None
    assert not auto.is_installed()
    assert not hasattr(_import(packages.name("mod")).f, "__callpyback__")
    assert not any(isinstance(f, InstrumentingFinder) for f in sys.meta_path)


def test_settings_enabled_false_installs_nothing(packages):
    """A config with enabled = false is the same as not installing."""
    packages.write("{p}mod.py", "def f():\n    return 1\n")
    assert auto.install(PatternSelector(packages.name("mod"), enabled=False)) is None
    assert not hasattr(_import(packages.name("mod")).f, "__callpyback__")


def test_install_rejects_something_that_is_not_a_config():
    """A clear ConfigurationError naming what is missing."""
    with pytest.raises(ConfigurationError, match=r"may_match_module\(\), wrapper_for\(\)"):
        auto.install(object())


def test_install_twice_replaces_the_previous_installation(packages):
    """One finder at a time; the first installation's layers are undone."""
    packages.write("{p}mod.py", "def f():\n    return 1\n")
    name = packages.name("mod")
    first = PatternSelector(name)
    auto.install(first)
    m = _import(name)
    original = m.f
    second = PatternSelector(name)
    auto.install(second)
    assert sum(isinstance(f, InstrumentingFinder) for f in sys.meta_path) == 1
    assert m.f is original and instrumented_by(m.f) is second.decorator
    m.f()
    assert first.calls == [] and second.calls == [f"{name}:f"]


def test_public_names_are_exported_lazily():
    """callpyback.install / uninstall are the autoinstrument functions."""
    assert callpyback.install is auto.install and callpyback.uninstall is auto.uninstall


def test_no_lock_is_held_while_a_module_imports_from_another_thread(packages):
    """A module whose import waits for another thread's import does not deadlock."""
    packages.write("{p}other.py", "def g():\n    return 'g'\n")
    packages.write(
        "{p}starter.py",
        """
        import importlib, threading
        result = []
        t = threading.Thread(target=lambda: result.append(importlib.import_module("{p}other").g()))
        t.start()
        t.join(30)
        FINISHED = not t.is_alive()

        def f():
            return result
        """,
    )
    auto.install(PatternSelector(f"{packages.prefix}*"))
    starter = _import(packages.name("starter"))
    assert starter.FINISHED and starter.f() == ["g"]


def test_concurrent_imports_instrument_each_module_once(packages):
    """Real threads importing the same instrumented modules: one layer each."""
    for i in range(8):
        packages.write(f"{{p}}m{i}.py", "def f():\n    return 1\n")
    sel = PatternSelector(f"{packages.prefix}*")
    auto.install(sel)
    barrier = threading.Barrier(8)
    errors = []

    def work():
        try:
            barrier.wait()
            for i in range(8):
                _import(packages.name(f"m{i}")).f()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for i in range(8):
        f = sys.modules[packages.name(f"m{i}")].f
        assert instrumented_by(f) is sel.decorator
    assert len(auto.report().wrapped) == 8 and len(sel.calls) == 64


def test_pytest_assertion_rewriting_still_works_with_the_hook(tmp_path):
    """Our finder delegates to pytest's rewriting hook: test modules are rewritten and wrapped."""
    (tmp_path / "conftest.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from tests.autoinstrument_support import PatternSelector\n"
        "import callpyback.autoinstrument as auto\n"
        "SEL = PatternSelector('test_rewritten')\n"
        "auto.install(SEL)\n"
    )
    (tmp_path / "test_rewritten.py").write_text(
        "import callpyback\n\n"
        "def helper(x):\n"
        "    return x + 1\n\n"
        "def test_fails():\n"
        "    assert callpyback.instrumented_by(helper) is not None\n"
        "    assert helper(1) == 3\n"
    )
    proc = run_python(["-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)], cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # the rewritten assertion explains the failing comparison
    assert "assert 2 == 3" in proc.stdout
    assert "where 2 = helper(1)" in proc.stdout


def test_install_retrofits_the_running_main_module():
    """install() called from a script wraps the script's functions defined before it."""
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from tests.autoinstrument_support import PatternSelector
        import callpyback.autoinstrument as auto
        from callpyback import instrumented_by

        def early():
            return 1

        sel = PatternSelector("__main__")
        auto.install(sel)
        early()
        print(sel.calls, instrumented_by(early) is not None)
        """
    )
    proc = run_python(["-c", code])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['__main__:early'] True"


def _lazy_import(name):
    spec = importlib.util.find_spec(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


def test_lazy_modules_are_instrumented_when_they_load_not_when_scanned(packages):
    """importlib.util.LazyLoader: neither import nor retrofit runs the module early."""
    src = "import builtins\nbuiltins.__dict__.setdefault('_cpbt_loaded', []).append(__name__)\n\n"
    src += "def f():\n    return 'f'\n"
    packages.write("{p}lazy_early.py", src)
    packages.write("{p}lazy_late.py", src)
    import builtins

    early_name, late_name = packages.name("lazy_early"), packages.name("lazy_late")
    try:
        early = _lazy_import(early_name)
        sel = PatternSelector(f"{packages.prefix}*")
        auto.install(sel)  # retrofit meets an unloaded lazy module
        late = _lazy_import(late_name)
        loaded = builtins.__dict__.get("_cpbt_loaded", [])
        assert early_name not in loaded and late_name not in loaded
        assert early.f() == "f" and late.f() == "f"  # first access runs them, instrumented
        assert sel.calls == [f"{early_name}:f", f"{late_name}:f"]
    finally:
        builtins.__dict__.pop("_cpbt_loaded", None)

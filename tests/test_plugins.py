"""Plugin discovery: entry points from real .dist-info metadata, isolation, allow/deny lists,
version gating, hook validation and programmatic registration."""

from __future__ import annotations

import importlib.metadata
import logging
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import pytest

import callpyback
from callpyback import plugins
from callpyback._registry import DuplicateComponentError, UnknownComponentError
from callpyback.errors import ConfigurationError


@pytest.fixture(autouse=True)
def _fresh_discovery(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(plugins.ALLOW_ENV, raising=False)
    monkeypatch.delenv(plugins.DENY_ENV, raising=False)
    plugins.reset()
    yield
    plugins.reset()


class Site:
    """A directory on sys.path holding fake distributions with real .dist-info metadata."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.monkeypatch = monkeypatch
        self.modules: list[str] = []
        monkeypatch.syspath_prepend(str(root))

    def dist(
        self,
        name: str,
        version: str = "1.0",
        entry_points: Optional[Dict[str, str]] = None,
        modules: Optional[Dict[str, str]] = None,
    ) -> None:
        info = self.root / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
        )
        lines = ["[callpyback]"] + [f"{k} = {v}" for k, v in (entry_points or {}).items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for module, source in (modules or {}).items():
            (self.root / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
            self.modules.append(module)
            self.monkeypatch.delitem(sys.modules, module, raising=False)
        importlib.invalidate_caches()

    def cleanup(self) -> None:
        for module in self.modules:
            sys.modules.pop(module, None)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    (tmp_path / "site").mkdir()
    s = Site(tmp_path / "site", monkeypatch)
    yield s
    s.cleanup()


def observer_plugin(component: str, *, extra: str = "") -> str:
    """Source of a plugin module registering one observer named ``component``."""
    return f"""
        from callpyback import hookimpl
        from pydantic import BaseModel, ConfigDict

        {extra}

        class Options(BaseModel):
            model_config = ConfigDict(extra="forbid")
            label: str = "x"

        class Obs:
            def __init__(self, label):
                self.label = label
            def update(self, context):
                pass

        @hookimpl
        def callpyback_register_components(registry):
            registry.observer({component!r}, Obs, options=Options, description="test")
    """


def info(name: str) -> plugins.PluginInfo:
    found = {p.name: p for p in plugins.list_plugins()}
    assert name in found, f"{name!r} not in {sorted(found)}"
    return found[name]


# --- the built-in plugin ----------------------------------------------------------------------


def test_builtin_plugin_is_listed_first_with_its_components() -> None:
    """The core registers itself as plugin 'callpyback', version 3.0.0, through the same hook."""
    first = plugins.list_plugins()[0]
    assert (first.name, first.distribution, first.version) == ("callpyback", "callpyback", "3.0.0")
    assert first.status == "loaded" and first.source == "builtin"
    assert ("time_source", "system") in first.components
    assert ("error_handler", "default") in first.components


def test_builtin_cannot_be_denied() -> None:
    """Denying 'callpyback' does not remove the core's own components."""
    plugins.configure(deny=["callpyback"])
    assert ("time_source", "mock") in plugins.get_registry()


def test_import_callpyback_scans_nothing() -> None:
    """`import callpyback` imports neither pluggy nor importlib.metadata nor the plugin module."""
    code = (
        "import sys, callpyback\n"
        "print(sorted(m for m in ('pluggy', 'importlib.metadata', 'callpyback.plugins', "
        "'pydantic') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def importlib_metadata() -> Any:
    import importlib_metadata as backport  # Python 3.9

    return backport


def test_entry_points_are_scanned_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Repeated get_registry() calls, and a reconfiguration, reuse the first scan."""
    calls = []
    # The module discovery reads entry points from (the backport before Python 3.10).
    metadata = importlib.metadata if sys.version_info >= (3, 10) else importlib_metadata()
    real = metadata.entry_points

    def counting(**kw: object) -> object:
        calls.append(kw)
        return real(**kw)

    monkeypatch.setattr(metadata, "entry_points", counting)
    first = plugins.get_registry()
    assert plugins.get_registry() is first
    plugins.configure(deny=["nothing-like-this"])
    assert plugins.get_registry() is not first  # rebuilt with the new lists...
    assert calls == [{"group": "callpyback"}]  # ...from the cached scan


def test_concurrent_first_use_builds_one_registry() -> None:
    """Threads racing to the first get_registry() all get the same registry."""
    barrier = threading.Barrier(8)
    seen = []

    def worker() -> None:
        barrier.wait()
        seen.append(plugins.get_registry())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8 and all(r is seen[0] for r in seen)


# --- entry points from real distributions -----------------------------------------------------


def test_plugin_from_a_distribution_is_discovered(site: Site) -> None:
    """An entry point in group 'callpyback' registers its components under its plugin name."""
    site.dist(
        "acme-obs", "2.5", {"acme": "acme_obs_mod"}, {"acme_obs_mod": observer_plugin("acme.obs")}
    )
    acme = info("acme")
    assert (acme.distribution, acme.version, acme.status) == ("acme-obs", "2.5", "loaded")
    assert acme.components == (("observer", "acme.obs"),)
    assert acme.entry_point == "acme = acme_obs_mod"
    spec = plugins.get_registry().get("observer", "acme.obs")
    assert spec.origin == "acme (distribution acme-obs)"
    assert spec.create({"label": "y"}).label == "y"


def test_broken_plugin_is_reported_once_and_others_keep_working(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    """An entry point raising on import fails alone, logged once: entry point, dist, error."""
    caplog.set_level(logging.INFO, logger="callpyback.plugins")
    site.dist(
        "broken-dist",
        "0.1",
        {"broken": "broken_mod"},
        {"broken_mod": "raise RuntimeError('kaboom at import')\n"},
    )
    site.dist("good-dist", "1.0", {"good": "good_mod"}, {"good_mod": observer_plugin("good.obs")})
    registry = plugins.get_registry()
    assert ("observer", "good.obs") in registry
    broken = info("broken")
    assert broken.status == "failed"
    assert "RuntimeError: kaboom at import" in (broken.error or "")
    assert info("good").status == "loaded"
    records = [r for r in caplog.records if "broken" in r.getMessage()]
    assert len(records) == 1
    message = records[0].getMessage()
    assert "broken = broken_mod" in message and "broken-dist 0.1" in message
    assert "kaboom at import" in message
    plugins.get_registry()
    plugins.list_plugins()
    assert len([r for r in caplog.records if "broken" in r.getMessage()]) == 1


def test_register_hook_failure_adds_nothing_from_that_plugin(site: Site) -> None:
    """Registration is all-or-nothing: a hook that raises after adding one component adds none."""
    source = """
        from callpyback import hookimpl

        @hookimpl
        def callpyback_register_components(registry):
            registry.observer("half.done", lambda: None)
            raise LookupError("second component missing")
    """
    site.dist("half-dist", "1.0", {"half": "half_mod"}, {"half_mod": source})
    half = info("half")
    assert half.status == "failed" and "LookupError: second component missing" in (half.error or "")
    assert ("observer", "half.done") not in plugins.get_registry()


def test_options_model_must_forbid_extra_keys(site: Site) -> None:
    """A plugin whose options model would silently ignore misspelt keys is failed with the fix."""
    lax = observer_plugin("lax.obs").replace('model_config = ConfigDict(extra="forbid")', "pass")
    site.dist("lax-dist", "1.0", {"lax": "lax_mod"}, {"lax_mod": lax})
    lax_info = info("lax")
    assert lax_info.status == "failed"
    assert "extra='forbid'" in (lax_info.error or "")


def test_duplicate_component_names_both_distributions(site: Site) -> None:
    """Two distributions registering one name: an error naming both; the first keeps the name."""
    site.dist(
        "alpha-dist", "1.0", {"alpha": "alpha_mod"}, {"alpha_mod": observer_plugin("shared.obs")}
    )
    site.dist("beta-dist", "1.0", {"beta": "beta_mod"}, {"beta_mod": observer_plugin("shared.obs")})
    beta = info("beta")
    assert beta.status == "failed"
    assert "DuplicateComponentError" in (beta.error or "")
    assert "alpha (distribution alpha-dist)" in (beta.error or "")
    assert "beta (distribution beta-dist)" in (beta.error or "")
    assert plugins.get_registry().get("observer", "shared.obs").distribution == "alpha-dist"


def test_third_party_cannot_shadow_a_builtin_name(site: Site) -> None:
    """The builtin registers first, so a plugin reusing 'default' is the one that fails."""
    source = """
        from callpyback import hookimpl

        @hookimpl
        def callpyback_register_components(registry):
            registry.error_handler("default", lambda: None)
    """
    site.dist("shadow-dist", "1.0", {"shadow": "shadow_mod"}, {"shadow_mod": source})
    shadow = info("shadow")
    assert shadow.status == "failed"
    assert "by callpyback and by shadow (distribution shadow-dist)" in (shadow.error or "")


def test_same_plugin_name_from_two_distributions(site: Site) -> None:
    """A second entry point with a taken plugin name fails, naming the distribution that has it."""
    site.dist("one-dist", "1.0", {"same": "one_mod"}, {"one_mod": observer_plugin("one.obs")})
    site.dist("two-dist", "1.0", {"same": "two_mod"}, {"two_mod": observer_plugin("two.obs")})
    registry = plugins.get_registry()
    assert ("observer", "one.obs") in registry and ("observer", "two.obs") not in registry
    assert info("same").distribution == "one-dist"


# --- allow and deny lists ---------------------------------------------------------------------


@pytest.fixture
def two_plugins(site: Site) -> Site:
    site.dist("red-dist", "1.0", {"red": "red_mod"}, {"red_mod": observer_plugin("red.obs")})
    site.dist("blue_dist", "1.0", {"blue": "blue_mod"}, {"blue_mod": observer_plugin("blue.obs")})
    return site


@pytest.mark.parametrize("entry", ["red", "red-dist", "RED_dist"])
def test_deny_by_plugin_or_distribution_name(two_plugins: Site, entry: str) -> None:
    """A deny entry matches the plugin name or the (normalised) distribution name."""
    plugins.configure(deny=[entry])
    registry = plugins.get_registry()
    assert ("observer", "red.obs") not in registry
    assert ("observer", "blue.obs") in registry
    red = info("red")
    assert red.status == "denied" and entry in (red.error or "")


@pytest.mark.parametrize("entry", ["blue", "blue-dist", "blue_dist"])
def test_allow_by_plugin_or_distribution_name(two_plugins: Site, entry: str) -> None:
    """With an allow list, only the listed plugins load; the rest are 'denied'."""
    plugins.configure(allow=[entry])
    registry = plugins.get_registry()
    assert ("observer", "blue.obs") in registry
    assert ("observer", "red.obs") not in registry
    assert info("red").status == "denied" and "allow list" in (info("red").error or "")


def test_deny_wins_over_allow(two_plugins: Site) -> None:
    plugins.configure(allow=["red", "blue"], deny=["blue-dist"])
    assert info("blue").status == "denied" and info("red").status == "loaded"


def test_lists_from_environment(two_plugins: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """CALLPYBACK_PLUGINS_ALLOW / _DENY are comma-separated; explicit configure() wins."""
    monkeypatch.setenv(plugins.DENY_ENV, " red , something-else")
    assert info("red").status == "denied"
    plugins.configure(deny=[])
    assert info("red").status == "loaded"
    plugins.reset()
    monkeypatch.delenv(plugins.DENY_ENV)
    monkeypatch.setenv(plugins.ALLOW_ENV, "blue-dist")
    assert info("red").status == "denied" and info("blue").status == "loaded"


def test_empty_allow_list_allows_no_third_party_plugin(two_plugins: Site) -> None:
    plugins.configure(allow=[])
    assert {p.name for p in plugins.list_plugins() if p.status == "loaded"} == {"callpyback"}


def test_unmatched_list_entry_is_warned_about(
    two_plugins: Site, caplog: pytest.LogCaptureFixture
) -> None:
    """A misspelt deny entry would leave the plugin active: it is logged with a suggestion."""
    caplog.set_level(logging.WARNING, logger="callpyback.plugins")
    plugins.configure(deny=["red-dsit"])
    plugins.get_registry()
    assert any(
        "'red-dsit' matches no installed plugin" in r.getMessage() and "red-dist" in r.getMessage()
        for r in caplog.records
    )


def test_configure_rejects_non_string_entries() -> None:
    with pytest.raises(ConfigurationError, match=r"deny must contain .* got 3"):
        plugins.configure(deny=["ok", 3])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="allow must be a list"):
        plugins.configure(allow=42)  # type: ignore[arg-type]


# --- version gating ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requires", "status"),
    [
        (">=3,<4", "loaded"),
        ("~=3.0", "loaded"),
        (">=4", "refused"),
        ("<3", "refused"),
        ("==2.*", "refused"),
    ],
)
def test_version_gating(site: Site, requires: str, status: str) -> None:
    """CALLPYBACK_REQUIRES is checked against callpyback 3.0.0 before the plugin registers."""
    source = observer_plugin("gated.obs", extra=f"CALLPYBACK_REQUIRES = {requires!r}")
    site.dist("gated-dist", "1.0", {"gated": "gated_mod"}, {"gated_mod": source})
    gated = info("gated")
    assert gated.status == status
    assert (("observer", "gated.obs") in plugins.get_registry()) == (status == "loaded")
    if status == "refused":
        assert gated.error == (
            f"plugin 'gated' supports callpyback {requires} but this is callpyback 3.0.0; install "
            "a version of the plugin made for this callpyback, or deny the plugin"
        )


@pytest.mark.parametrize("requires", ["'>=banana'", "3"])
def test_invalid_version_declaration_is_refused(site: Site, requires: str) -> None:
    source = observer_plugin("bad.obs", extra=f"CALLPYBACK_REQUIRES = {requires}")
    site.dist("badver-dist", "1.0", {"badver": "badver_mod"}, {"badver_mod": source})
    bad = info("badver")
    assert bad.status == "refused" and "CALLPYBACK_REQUIRES" in (bad.error or "")


@pytest.mark.parametrize(
    ("spec", "version", "expected"),
    [
        (">=3,<4", "3.0.0", True),
        (">=3,<4", "4.0", False),
        (">3", "3.0.0", False),
        ("~=3.1", "3.9.2", True),
        ("~=3.1", "4.0", False),
        ("~=3.1.2", "3.2", False),
        ("==3.*", "3.7", True),
        ("!=3.*", "3.7", False),
        ("==3.0", "3.0.0", True),
        ("!=3.0.1", "3.0.0", True),
        ("<=2.9", "3.0.0", False),
        (">=3.1.0rc1", "3.1.0rc2", True),  # packaging's PEP 440, pre-releases included
        ("", "3.0.0", True),
    ],
)
def test_version_specifiers_are_pep_440(spec: str, version: str, expected: bool) -> None:
    """version_matches is packaging's SpecifierSet: no hand-written comparator."""
    assert plugins.version_matches(spec, version) is expected


@pytest.mark.parametrize("spec", [">=x", "=>3", "~=3", ">=3.*"])
def test_bad_specifiers_are_value_errors(spec: str) -> None:
    with pytest.raises(ValueError):
        plugins.version_matches(spec, "3.0.0")


# --- hook validation --------------------------------------------------------------------------


def test_hookimpl_signature_mismatch_is_refused_with_pluggys_message(site: Site) -> None:
    source = """
        from callpyback import hookimpl

        @hookimpl
        def callpyback_register_components(registry, colour):
            pass
    """
    site.dist("sig-dist", "1.0", {"sig": "sig_mod"}, {"sig_mod": source})
    sig = info("sig")
    assert sig.status == "refused"
    assert "callpyback_register_components" in (sig.error or "")
    assert "colour" in (sig.error or "")  # pluggy names the argument the spec does not have


def test_misspelt_hook_name_is_refused(site: Site) -> None:
    source = """
        from callpyback import hookimpl

        @hookimpl
        def callpyback_register_component(registry):
            pass
    """
    site.dist("typo-dist", "1.0", {"typo": "typo_mod"}, {"typo_mod": source})
    typo = info("typo")
    assert typo.status == "refused"
    assert typo.error == (
        "plugin 'typo' implements unknown hook 'callpyback_register_component' (did you mean "
        "'callpyback_register_components'?); CallPyBack's hooks are "
        "['callpyback_configure', 'callpyback_install', 'callpyback_register_components', "
        "'callpyback_uninstall']"
    )


# --- programmatic registration ----------------------------------------------------------------


class InCode:
    """A plugin object defined in code."""

    def __init__(self, component: str = "code.obs") -> None:
        self.component = component
        self.configs: list[object] = []

    @callpyback.hookimpl
    def callpyback_register_components(self, registry: plugins.ComponentRegistrar) -> None:
        registry.error_handler(self.component, callpyback.DefaultErrorHandler)

    @callpyback.hookimpl
    def callpyback_configure(self, config: object) -> None:
        self.configs.append(config)


def test_register_plugin_before_discovery_joins_when_it_runs() -> None:
    name = callpyback.register_plugin(InCode(), name="incode")
    assert name == "incode"
    assert ("error_handler", "code.obs") in plugins.get_registry()
    found = info("incode")
    assert (found.source, found.distribution, found.status) == ("programmatic", None, "loaded")


def test_register_plugin_after_discovery_is_immediate() -> None:
    registry = plugins.get_registry()
    callpyback.register_plugin(InCode("late.obs"), name="late")
    assert ("error_handler", "late.obs") in registry
    handler = registry.create("error_handler", "late.obs")
    assert isinstance(handler, callpyback.DefaultErrorHandler)


def test_register_plugin_errors() -> None:
    """Taken names, duplicate components, bad hooks and unsupported versions raise at once."""
    plugin = InCode()
    plugins.get_registry()
    callpyback.register_plugin(plugin, name="p1")
    with pytest.raises(ConfigurationError, match="already registered as 'p1'"):
        callpyback.register_plugin(plugin, name="p2")
    with pytest.raises(ConfigurationError, match="a plugin named 'p1' is already registered"):
        callpyback.register_plugin(InCode("other"), name="p1")
    with pytest.raises(
        DuplicateComponentError, match=r"'code.obs' is registered twice: by p1 and by p3"
    ):
        callpyback.register_plugin(InCode(), name="p3")
    assert "p3" not in {p.name for p in plugins.list_plugins()}

    class BadSignature:
        @callpyback.hookimpl
        def callpyback_configure(self, config: object, extra: object) -> None: ...

    with pytest.raises(ConfigurationError, match="refused by pluggy"):
        callpyback.register_plugin(BadSignature(), name="badsig")

    class TooNew(InCode):
        CALLPYBACK_REQUIRES = ">=9"

    with pytest.raises(
        ConfigurationError, match=r"supports callpyback >=9 but this is callpyback 3\.0\.0"
    ):
        callpyback.register_plugin(TooNew("new.obs"), name="toonew")


def test_programmatic_plugins_survive_reconfiguration() -> None:
    callpyback.register_plugin(InCode(), name="keeper")
    plugins.get_registry()
    plugins.configure(deny=["keeper"])  # the lists apply to discovered plugins, not explicit ones
    assert ("error_handler", "code.obs") in plugins.get_registry()


def test_unknown_component_lists_installed_plugins() -> None:
    with pytest.raises(UnknownComponentError, match="Did you mean 'mock'"):
        plugins.get_registry().get("time_source", "mokc")


# --- the configure hook -----------------------------------------------------------------------


def test_notify_config_calls_each_loaded_plugin_in_isolation(site: Site) -> None:
    failing = """
        from callpyback import hookimpl

        @hookimpl
        def callpyback_configure(config):
            raise KeyError("no such section")
    """
    site.dist("cfgfail-dist", "1.0", {"cfgfail": "cfgfail_mod"}, {"cfgfail_mod": failing})
    plugin = InCode()
    callpyback.register_plugin(plugin, name="listener")
    config = {"version": 1}
    failures = plugins.notify_config(config)
    assert plugin.configs == [config]
    assert failures == {"cfgfail": "KeyError: 'no such section'"}


def test_notify_config_lets_configuration_errors_through() -> None:
    class Strict:
        @callpyback.hookimpl
        def callpyback_configure(self, config: object) -> None:
            raise ConfigurationError("the strict plugin needs [strict] in the config")

    callpyback.register_plugin(Strict(), name="strict")
    with pytest.raises(ConfigurationError, match="needs"):
        plugins.notify_config({})


def test_a_plugin_hook_may_use_the_registry_while_discovery_runs() -> None:
    """Re-entering get_registry() from a hook returns the registry being filled, not a deadlock."""
    seen = []

    class Curious:
        @callpyback.hookimpl
        def callpyback_register_components(self, registry: plugins.ComponentRegistrar) -> None:
            seen.append(sorted(plugins.get_registry().names("time_source")))

    callpyback.register_plugin(Curious(), name="curious")
    plugins.get_registry()
    assert seen == [["mock", "system"]]


def test_a_denied_plugins_types_are_unknown_to_the_config(tmp_path: Path) -> None:
    """The config sees exactly the registry that discovery built: a denied type is an error."""
    path = tmp_path / "callpyback.toml"
    trail = (tmp_path / "t.jsonl").as_posix()
    path.write_text(
        f'version = 1\n[observers.ledger]\ntype = "finance.audit"\npath = "{trail}"\n',
        encoding="utf-8",
    )
    plugins.configure(deny=["callpyback-finance"])
    with pytest.raises(callpyback.ConfigError) as info:
        callpyback.load_config(path)
    assert "callpyback.toml:3: observers.ledger.type: unknown observer type 'finance.audit'" in str(
        info.value
    )
    plugins.configure(deny=[])
    config = callpyback.load_config(path)
    assert config.pipeline_for("anything:f") is None  # loads now; no pipelines


# --- faults: nothing a plugin does ends the program, and messages say what happened ------------


def test_system_exit_from_a_plugin_is_contained_and_reported(site: Site) -> None:
    """SystemExit at import, in the register hook or in the configure hook: that plugin is
    failed (or its configure skipped) with the reason; discovery and the others go on."""
    site.dist(
        "exit-dist",
        "1.0",
        {"exiting": "exit_mod"},
        {"exit_mod": "import sys\nsys.exit('plugin says bye')\n"},
    )
    site.dist(
        "hook-dist",
        "1.0",
        {"hookexit": "hook_mod"},
        {
            "hook_mod": """
        import sys
        from callpyback import hookimpl

        @hookimpl
        def callpyback_register_components(registry):
            raise SystemExit(3)
    """
        },
    )
    site.dist(
        "conf-dist",
        "1.0",
        {"confexit": "conf_mod"},
        {
            "conf_mod": """
        from callpyback import hookimpl

        @hookimpl
        def callpyback_configure(config):
            raise SystemExit("no config for you")
    """
        },
    )
    site.dist("good-dist", "1.0", {"good": "good_mod"}, {"good_mod": observer_plugin("good.obs")})
    assert ("observer", "good.obs") in plugins.get_registry()
    assert info("exiting").status == "failed"
    assert "SystemExit: plugin says bye" in (info("exiting").error or "")
    assert info("hookexit").status == "failed" and "SystemExit: 3" in (info("hookexit").error or "")
    assert plugins.notify_config({}) == {"confexit": "SystemExit: no config for you"}


def test_a_denied_plugins_type_says_the_plugin_is_installed_but_denied(
    site: Site, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An 'acme.*' type with acme denied: the error names acme, its distribution and the entry
    that denied it, not just "unknown; installed plugins: callpyback"."""
    site.dist(
        "acme-obs", "2.5", {"acme": "acme_obs_mod"}, {"acme_obs_mod": observer_plugin("acme.obs")}
    )
    monkeypatch.setenv(plugins.DENY_ENV, "acme")
    with pytest.raises(UnknownComponentError) as info_:
        plugins.get_registry().get("observer", "acme.obs")
    assert (
        "Plugin acme (distribution acme-obs 2.5) not loaded: denied by the deny list entry "
        "'acme'" in str(info_.value)
    )
    path = tmp_path / "callpyback.toml"
    path.write_text('[observers.a]\ntype = "acme.obs"\n', encoding="utf-8")
    with pytest.raises(callpyback.ConfigError) as error:
        callpyback.load_config(path, env={})
    (problem,) = error.value.problems
    assert problem.key == "observers.a.type"
    assert (
        "plugin acme (distribution acme-obs 2.5) not loaded: denied by the deny list entry "
        "'acme'" in problem.message
    )


def test_allowing_only_the_core_is_a_known_entry(
    two_plugins: Site, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """CALLPYBACK_PLUGINS_ALLOW=callpyback loads the core only, without an 'unmatched' warning."""
    caplog.set_level(logging.WARNING, logger="callpyback.plugins")
    monkeypatch.setenv(plugins.ALLOW_ENV, "callpyback")
    assert {p.name for p in plugins.list_plugins() if p.status == "loaded"} == {"callpyback"}
    assert not [r for r in caplog.records if "matches no installed" in r.getMessage()]


@pytest.mark.parametrize("value", ["", " ", " , "])
def test_an_allow_variable_naming_nothing_counts_as_unset(
    two_plugins: Site, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """As every CALLPYBACK_* variable: empty means unset, so every plugin loads (the docs say
    so; ``configure(allow=[])`` is the way to load none)."""
    monkeypatch.setenv(plugins.ALLOW_ENV, value)
    loaded = {p.name for p in plugins.list_plugins() if p.status == "loaded"}
    assert {"red", "blue"} <= loaded


def test_registry_create_with_bad_options_is_a_config_error() -> None:
    """Not a raw pydantic ValidationError: a ConfigError naming option, value and component."""
    with pytest.raises(callpyback.ConfigError) as info_:
        plugins.get_registry().create("observer", "timing", {"threshold": -1, "kep": 3})
    assert isinstance(info_.value, ValueError)
    by_key = {p.key: p for p in info_.value.problems}
    assert by_key["threshold"].given == -1
    assert by_key["threshold"].component == "observer type 'timing'"
    assert "in the options of observer type 'timing'" in str(info_.value)
    assert by_key["kep"].suggestions == ["keep"]


def test_a_host_of_ones_own_is_independent_of_the_default() -> None:
    """PluginHost holds discovery state; the module functions use the default host only."""
    mine = plugins.PluginHost()
    mine.register(InCode("mine.only"), name="mine")
    assert ("error_handler", "mine.only") in mine.get_registry()
    assert ("error_handler", "mine.only") not in plugins.get_registry()
    assert plugins.default_host() is not mine


def test_bad_options_error_is_still_pydantics_validation_error_for_old_code() -> None:
    """Code catching pydantic's ValidationError from registry.create keeps working."""
    import pickle

    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info_:
        plugins.get_registry().create("error_handler", "retry", {"attempts": 0})
    assert isinstance(info_.value, callpyback.ConfigError)
    assert info_.value.errors()[0]["loc"] == ("attempts",)
    assert str(info_.value).startswith("1 problem in the options of error_handler type 'retry'")
    again = pickle.loads(pickle.dumps(info_.value))
    assert isinstance(again, callpyback.ConfigError) and str(again) == str(info_.value)

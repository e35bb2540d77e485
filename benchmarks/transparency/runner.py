"""Download, install and run each library's own test suite, plainly and under ``callpyback run``.

For one library: the sdist comes from PyPI (``pip download --no-binary NAME --no-deps``) into
the cache; a venv per library (cached, keyed by this checkout, the interpreter and the
requirements) gets this checkout of callpyback (editable, so it always runs the code in front of
you), the library built from its sdist and the suite's test requirements.  The suite runs twice
from fresh copies of the unpacked sdist, with the same environment and the same options:

    python -m pytest -p cpb_corpus_outcomes ARGS
    python -m callpyback run -c corpus.toml -m pytest -p cpb_corpus_outcomes ARGS

where ``corpus.toml`` matches every function of the package in one ``metrics`` pipeline (test
modules excluded).  The plugin (``pytest_outcomes.py``) records every test's outcome; the runs are
compared test by test (sets of node ids and their outcomes, not counts), with the suite's wall
and CPU time (the child's user + system) instrumented / plain.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .corpus import Library

ROOT = Path(__file__).resolve().parents[2]  # this checkout of callpyback
PLUGIN = Path(__file__).with_name("pytest_outcomes.py")
PLUGIN_MODULE = "cpb_corpus_outcomes"
TIMEOUT = 3600.0  # one suite run; packaging's whole suite instrumented is the longest


def cache_dir() -> Path:
    """``$CALLPYBACK_CORPUS_CACHE``, else ``~/.cache/callpyback-corpus``."""
    return Path(
        os.environ.get("CALLPYBACK_CORPUS_CACHE") or "~/.cache/callpyback-corpus"
    ).expanduser()


class CorpusError(RuntimeError):
    """A library could not be fetched, installed or run: the message says which step and why."""


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _pip_noise(text: str) -> str:
    # The local extra indexes of this machine warn about every missing project: not news.
    return "\n".join(line for line in text.splitlines() if "is ignored: it is neither" not in line)


def _run(argv: Sequence[str], what: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, **kwargs)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CorpusError(f"{what}: {exc}") from exc
    if done.returncode != 0:
        raise CorpusError(
            f"{what} failed (exit status {done.returncode}):\n  $ {' '.join(argv)}\n"
            f"{_tail(_pip_noise(done.stderr + done.stdout))}"
        )
    return done


# --- fetching -------------------------------------------------------------------------------
def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def fetch(lib: Library) -> Path:
    """The library's sdist, downloaded from PyPI once (``pip download``) and then cached."""
    where = cache_dir() / "sdists"
    where.mkdir(parents=True, exist_ok=True)

    def cached() -> Optional[Path]:
        for path in sorted(where.iterdir()):
            for suffix in (".tar.gz", ".zip"):
                if path.name.endswith(suffix):
                    dist, _, version = path.name[: -len(suffix)].rpartition("-")
                    if _normalise(dist) == _normalise(lib.name) and version == lib.version:
                        return path
        return None

    found = cached()
    if found is not None:
        return found
    argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", lib.name]
    argv += ["--disable-pip-version-check", "-d", str(where), f"{lib.name}=={lib.version}"]
    try:
        _run(argv, f"downloading the sdist of {lib.name}=={lib.version} from PyPI", timeout=600)
    except CorpusError as exc:
        raise CorpusError(
            f"{exc}\nThe corpus needs network access to PyPI to download each library's sdist "
            f"once (it is then kept in {where})."
        ) from None
    found = cached()
    if found is None:
        raise CorpusError(
            f"pip downloaded no sdist of {lib.name}=={lib.version} into {where} "
            f"(found: {sorted(p.name for p in where.iterdir())})"
        )
    return found


def unpack(lib: Library, sdist: Path) -> Path:
    """The sdist's tree, unpacked once under the cache (``src/NAME-VERSION``)."""
    dest = cache_dir() / "src" / lib.key
    marker = dest / ".cpb-unpacked"
    if marker.exists():
        return Path(marker.read_text().strip())
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if sdist.name.endswith(".zip"):
        with zipfile.ZipFile(sdist) as archive:
            archive.extractall(dest)
    else:
        with tarfile.open(sdist) as archive:
            if sys.version_info >= (3, 12):
                archive.extractall(dest, filter="data")
            else:
                archive.extractall(dest)  # a PyPI sdist we chose by name
    tops = [p for p in dest.iterdir() if p.is_dir()]
    tree = tops[0] if len(tops) == 1 else dest
    marker.write_text(str(tree))
    return tree


# --- the venv -------------------------------------------------------------------------------
@dataclass
class Venv:
    path: Path
    python: Path
    site: Path
    freeze: List[str]


def callpyback_source() -> List[str]:
    """What the corpus venvs install as callpyback: the same as this interpreter has.

    The checkout, editable, unless this interpreter has callpyback installed from a wheel file
    (``.ci/matrix.sh`` tests the built wheel from a copy of the tree without the package): then
    that wheel, so the corpus tests what the rest of the suite tests.
    """
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        text = distribution("callpyback").read_text("direct_url.json")
    except (ImportError, PackageNotFoundError):
        text = None
    if text:
        url = json.loads(text)
        path = Path(re.sub(r"^file://", "", url.get("url", "")))
        if "archive_info" in url and path.suffix == ".whl" and path.is_file():
            return [str(path)]
    if not (ROOT / "callpyback" / "__init__.py").is_file():
        raise CorpusError(
            f"no callpyback to install in the corpus venvs: {ROOT} has no callpyback package "
            "and this interpreter's callpyback was not installed from a wheel file"
        )
    return ["-e", str(ROOT)]


def _venv_key(libs: Sequence[Library]) -> str:
    source = callpyback_source()
    facts = [str(ROOT) if source[0] == "-e" else source[0], sys.executable, sys.version]
    for lib in libs:
        facts += [lib.key, *lib.requirements]
    digest = hashlib.sha256("\0".join(facts).encode()).hexdigest()[:10]
    name = libs[0].key if len(libs) == 1 else f"shared-{len(libs)}"
    return f"{name}-py{sys.version_info[0]}.{sys.version_info[1]}-{digest}"


def _requirements(libs: Sequence[Library]) -> List[str]:
    return sorted({r for lib in libs for r in lib.requirements})


def venv(lib: Library, tree: Path, shared: Sequence[Library] = ()) -> Venv:
    """A venv with callpyback (this checkout, editable), the library and its test requirements.

    ``shared``: more libraries installed in the same venv (with their test requirements), so
    that a small subset (the CI one) pays for one venv, not one per library.
    """
    others = [other for other in shared if other.name != lib.name]
    libs = [lib, *others]
    trees = [tree, *(unpack(other, fetch(other)) for other in others)]
    path = cache_dir() / "venvs" / _venv_key(sorted(libs, key=lambda x: x.name))
    python = path / "bin" / "python"
    ready = path / "cpb-ready.json"
    if not ready.exists():
        if path.exists():
            shutil.rmtree(path)  # a half-made venv from an interrupted set-up
        path.parent.mkdir(parents=True, exist_ok=True)
        _run([sys.executable, "-m", "venv", str(path)], f"creating the venv for {path.name}")
        pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
        _run([*pip, "install", "-q", "-U", "pip"], "upgrading pip in the venv", timeout=600)
        _run(
            [*pip, "install", "-q", *callpyback_source(), *map(str, trees), *_requirements(libs)],
            f"installing callpyback, {', '.join(x.key for x in libs)} (from the sdists) and "
            f"{_requirements(libs)}",
            timeout=1800,
        )
        purelib = _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            "locating site-packages",
        ).stdout.strip()
        freeze = _run([*pip, "freeze", "--all"], "listing the venv").stdout.split()
        ready.write_text(json.dumps({"site": purelib, "freeze": freeze}, indent=1))
    info = json.loads(ready.read_text())
    site = Path(info["site"])
    # Copied on every run, so an edited plugin always takes effect.
    shutil.copyfile(PLUGIN, site / f"{PLUGIN_MODULE}.py")
    return Venv(path, python, site, list(info["freeze"]))


# --- one suite run --------------------------------------------------------------------------
CONFIG = """\
version = 1

[settings]
instrument_frame_inspectors = {frames}

[observers.metrics]
type = "metrics"

[[pipelines]]
match = {match}
exclude = {exclude}
observers = ["metrics"]
"""


def config_text(lib: Library, frame_inspectors: bool = False, avoid: bool = False) -> str:
    """The ``callpyback.toml`` of the instrumented run: every function of the package.

    ``avoid``: also exclude what the library's inherent differences document as the way to
    avoid them (``Library.avoid``).
    """
    return CONFIG.format(
        frames="true" if frame_inspectors else "false",
        match=json.dumps(list(lib.packages)),
        exclude=json.dumps([*lib.exclude, *(lib.avoid if avoid else ())]),
    )


@dataclass
class SuiteRun:
    mode: str  # "plain" or "instrumented"
    outcomes: Dict[str, str]
    messages: Dict[str, str]
    exitstatus: int
    instrumentation: Optional[Dict[str, Any]]
    wall: float  # the whole process: interpreter, pytest and callpyback start-up included
    cpu: float
    log: Path
    session: List[float]  # wall, CPU of the session alone (collection and tests)

    def summary(self) -> str:
        return summarise(self.outcomes)


_ORDER = ("passed", "failed", "error", "collect-error", "skipped", "xfailed", "xpassed")


def summarise(outcomes: Dict[str, str]) -> str:
    """``1376 passed, 1 failed, 3 skipped`` (pytest's words; collection errors counted)."""
    counts = Counter(outcomes.values())
    words = {"collect-error": "collection errors", "error": "errors"}
    parts = [f"{counts[k]} {words.get(k, k)}" for k in _ORDER if counts.get(k)]
    return ", ".join(parts) or "no tests"


def _environment(outcomes: Path) -> Dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        # Nothing of ours, of an enclosing pytest or of the caller's venv leaks into the suite.
        if not k.startswith(("CALLPYBACK", "PYTEST", "COV_", "CPB_"))
        and k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONSTARTUP", "PYTHONWARNINGS"}
    }
    env.update(PYTHONHASHSEED="0", PY_COLORS="0", CPB_CORPUS_OUTCOMES=str(outcomes))
    return env


def _stable_ids(lib: Library, by_id: Dict[str, str], what: str) -> Dict[str, str]:
    """Node ids with ``Library.volatile`` rewritten (parameters made at collection time, such
    as the current time, would make the two runs' ids differ)."""
    if not lib.volatile:
        return by_id
    out: Dict[str, str] = {}
    for nodeid, value in by_id.items():
        stable = nodeid
        for pattern, replacement in lib.volatile:
            stable = re.sub(pattern, replacement, stable)
        if stable in out:
            raise CorpusError(f"{what}: two tests have the node id {stable!r} once normalised")
        out[stable] = value
    return out


def run_suite(
    lib: Library,
    env: Venv,
    tree: Path,
    mode: str,
    args: Sequence[str],
    frame_inspectors: bool = False,
    avoid: bool = False,
) -> SuiteRun:
    """Run the suite once, from a fresh copy of the sdist tree."""
    work = cache_dir() / "work" / f"{lib.key}-{mode}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    copy = work / tree.name
    shutil.copytree(tree, copy, symlinks=True, ignore=shutil.ignore_patterns(".cpb-*"))
    outcomes = work / "outcomes.json"
    log = work / "pytest.log"
    pytest_argv = ["-m", "pytest", "-p", PLUGIN_MODULE, "-p", "no:cacheprovider", "-q", *args]
    if mode == "plain":
        argv = [str(env.python), *pytest_argv]
    else:
        config = work / "corpus.toml"
        config.write_text(config_text(lib, frame_inspectors, avoid))
        argv = [str(env.python), "-m", "callpyback", "run", "-c", str(config), *pytest_argv]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with log.open("w") as out:
        try:
            subprocess.run(
                argv,
                cwd=copy,
                env=_environment(outcomes),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=TIMEOUT,
            )
        except subprocess.TimeoutExpired as exc:
            raise CorpusError(
                f"{lib.key} ({mode}) did not finish in {TIMEOUT:.0f} s; see {log}"
            ) from exc
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if not outcomes.exists():
        raise CorpusError(
            f"{lib.key} ({mode}): pytest ended without a session report; the log ({log}) ends:\n"
            f"{_tail(log.read_text(errors='replace'))}"
        )
    data = json.loads(outcomes.read_text())
    if not data["outcomes"] or data["exitstatus"] not in (0, 1):
        # 2: interrupted, 3: internal error, 4: usage error, 5: no tests collected
        raise CorpusError(
            f"{lib.key} ({mode}): pytest exited with status {data['exitstatus']} after "
            f"{len(data['outcomes'])} tests; the log ({log}) ends:\n"
            f"{_tail(log.read_text(errors='replace'))}"
        )
    return SuiteRun(
        mode,
        _stable_ids(lib, data["outcomes"], f"{lib.key} ({mode})"),
        _stable_ids(lib, data["messages"], f"{lib.key} ({mode})"),
        data["exitstatus"],
        data["instrumentation"],
        wall,
        cpu,
        log,
        data["session"],
    )


# --- comparing ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Difference:
    nodeid: str
    plain: str  # an outcome, or "absent"
    instrumented: str
    message: str  # the instrumented run's crash line (or the plain one's)


def compare(plain: SuiteRun, instrumented: SuiteRun) -> List[Difference]:
    """Every test whose outcome differs, or that only one run has."""
    out = []
    for nodeid in sorted(set(plain.outcomes) | set(instrumented.outcomes)):
        a = plain.outcomes.get(nodeid, "absent")
        b = instrumented.outcomes.get(nodeid, "absent")
        if a != b:
            message = instrumented.messages.get(nodeid) or plain.messages.get(nodeid, "")
            out.append(Difference(nodeid, a, b, message))
    return out


@dataclass
class LibraryResult:
    lib: Library
    plain: SuiteRun
    instrumented: SuiteRun
    differences: List[Difference]
    freeze: List[str] = field(default_factory=list)
    args: List[str] = field(default_factory=list)

    avoided: bool = False  # run with the library's ``avoid`` exclusions

    @property
    def identical(self) -> bool:
        return not self.differences

    @property
    def inherent(self) -> List[Difference]:
        """The differences documented as inherent (``Library.inherent``)."""
        known = dict(self.lib.inherent)
        return [d for d in self.differences if d.nodeid in known]

    @property
    def unexpected(self) -> List[Difference]:
        """Differences not documented, and documented ones that did not happen (so that the
        documentation stays true); with ``avoid``, every difference."""
        known = {} if self.avoided else dict(self.lib.inherent)
        out = [d for d in self.differences if d.nodeid not in known]
        seen = {d.nodeid for d in self.differences}
        for nodeid in known:
            if nodeid not in seen:
                out.append(
                    Difference(nodeid, "?", "?", "documented as inherent, but identical now")
                )
        return out

    @property
    def wall_ratio(self) -> float:
        return self.instrumented.wall / self.plain.wall if self.plain.wall else float("nan")

    @property
    def cpu_ratio(self) -> float:
        return self.instrumented.cpu / self.plain.cpu if self.plain.cpu else float("nan")

    @property
    def session_ratio(self) -> float:
        """Instrumented / plain CPU time of the pytest session (collection and tests)."""
        a, b = self.plain.session[1], self.instrumented.session[1]
        return b / a if a else float("nan")

    def to_json(self) -> Dict[str, Any]:
        return {
            "library": self.lib.name,
            "version": self.lib.version,
            "args": self.args,
            "plain": self.plain.summary(),
            "instrumented": self.instrumented.summary(),
            "identical": self.identical,
            "avoided": self.avoided,
            "unexpected": [d.__dict__ for d in self.unexpected],
            "differences": [d.__dict__ for d in self.differences],
            "instrumentation": self.instrumented.instrumentation,
            "wall": [self.plain.wall, self.instrumented.wall],
            "cpu": [self.plain.cpu, self.instrumented.cpu],
            "session": [self.plain.session, self.instrumented.session],
            "plain_failures": {
                k: self.plain.messages.get(k, "")
                for k, v in self.plain.outcomes.items()
                if v in ("failed", "error", "collect-error")
            },
            "freeze": self.freeze,
        }


def run_library(
    lib: Library,
    full: bool = False,
    frame_inspectors: bool = False,
    log: Any = None,
    avoid: bool = False,
    shared: Sequence[Library] = (),
) -> LibraryResult:
    """Fetch, install, run both ways and compare one library (``shared``: see ``venv``)."""
    say = log or (lambda text: None)
    if not lib.supported:
        raise CorpusError(
            f"{lib.key} needs Python >= {lib.python[0]}.{lib.python[1]} (this is "
            f"{sys.version_info[0]}.{sys.version_info[1]})"
        )
    say(f"{lib.key}: fetching the sdist")
    tree = unpack(lib, fetch(lib))
    say(f"{lib.key}: preparing the venv")
    env = venv(lib, tree, shared)
    args = list(lib.full_args if full and lib.full_args else lib.pytest_args)
    say(f"{lib.key}: running the suite plainly")
    plain = run_suite(lib, env, tree, "plain", args)
    say(f"{lib.key}: {plain.summary()} in {plain.wall:.1f} s; running it instrumented")
    instrumented = run_suite(lib, env, tree, "instrumented", args, frame_inspectors, avoid)
    say(f"{lib.key}: {instrumented.summary()} in {instrumented.wall:.1f} s")
    if not instrumented.instrumentation or not instrumented.instrumentation.get("wrapped"):
        raise CorpusError(
            f"{lib.key}: the instrumented run wrapped no function of {list(lib.packages)} "
            f"(instrumentation: {instrumented.instrumentation}); see {instrumented.log}"
        )
    differences = compare(plain, instrumented)
    return LibraryResult(lib, plain, instrumented, differences, env.freeze, args, avoid)


# --- the table ------------------------------------------------------------------------------
def _same(r: LibraryResult) -> str:
    if r.identical:
        return "yes (avoid)" if r.avoided else "yes"
    if not r.unexpected:
        return f"yes but {len(r.differences)} inherent"
    return f"NO ({len(r.unexpected)} unexpected)"


def table(results: Sequence[LibraryResult]) -> str:
    """The before/after table (markdown), then every differing test."""
    lines = [
        "| library | plain | instrumented | same | wrapped (frame inspectors skipped) "
        "| calls observed (raised) "
        "| suite CPU ratio | process wall, CPU ratio |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        inst = r.instrumented.instrumentation or {}
        lines.append(
            f"| {r.lib.name} {r.lib.version} | {r.plain.summary()} | {r.instrumented.summary()} "
            f"| {_same(r)} "
            f"| {inst.get('wrapped', 0)} ({len(inst.get('frame_inspectors', ()))}) "
            f"| {inst.get('calls', 0):,} ({inst.get('failures', 0):,}) "
            f"| {r.session_ratio:.2f} ({r.plain.session[1]:.1f} s) "
            f"| {r.wall_ratio:.2f}, {r.cpu_ratio:.2f} ({r.plain.wall:.1f} s) |"
        )
    for r in results:
        if r.differences:
            lines.append("")
            lines.append(f"{r.lib.key}: {len(r.differences)} tests differ")
            known = dict(r.lib.inherent)
            for d in r.differences:
                lines.append(f"  {d.nodeid}: {d.plain} -> {d.instrumented}: {d.message}")
                if d.nodeid in known and not r.avoided:
                    lines.append(f"    inherent: {known[d.nodeid]}")
        missing = [d for d in r.unexpected if d.plain == "?"]
        for d in missing:
            lines.append(f"  {r.lib.key} {d.nodeid}: {d.message}")
    notes = [r for r in results if r.lib.note]
    if notes:
        lines.append("")
        lines.extend(f"{r.lib.name}: {r.lib.note}" for r in notes)
    return "\n".join(lines)

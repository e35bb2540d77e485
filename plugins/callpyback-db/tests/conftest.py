"""Fixtures for the db plugin's tests: real sqlite3 files, a real throwaway PostgreSQL cluster,
and an observer that records what each statement call exposed."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

import callpyback as cpb
from callpyback import plugins


@pytest.fixture(autouse=True)
def _connections_left_open_are_collected_here() -> Iterator[None]:
    """Tests that let a connection go out of scope unclosed (most of them: it is what a user's
    code does too) have it collected at their own end.  From 3.13 sqlite3 warns with a
    ResourceWarning there, which ``filterwarnings = error`` turns into an unraisable error in
    whatever test the garbage collector happened to run in next."""
    yield
    import gc
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture(autouse=True)
def _fresh_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(plugins.ALLOW_ENV, raising=False)
    monkeypatch.delenv(plugins.DENY_ENV, raising=False)
    plugins.reset()
    yield
    import callpyback_db._api as api

    for instrumentation in list(api._modules.values()):
        instrumentation.undo()
    import callpyback.autoinstrument as auto

    auto.uninstall()
    plugins.reset()


class Calls:
    """Records one entry per completed statement call: target, outcome and the statement."""

    def __init__(self) -> None:
        self.entries: List[Dict[str, Any]] = []

    def observer(self) -> Any:
        def record(function_info: Any, outcome: Any, arguments: Any, exception: Any) -> None:
            statement = arguments["statement"]
            self.entries.append(
                {
                    "target": function_info.target,
                    "outcome": outcome,
                    "exception": exception,
                    "statement": statement,
                    **dict(statement),
                }
            )

        return cpb.on_completion(record, name="record-statements")

    @property
    def targets(self) -> List[str]:
        return [e["target"] for e in self.entries]

    def clear(self) -> None:
        self.entries.clear()


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def pipeline(calls: Calls) -> cpb.CallPyBack:
    return cpb.CallPyBack(observers=[calls.observer()], name="db-test")


# --- PostgreSQL ---------------------------------------------------------------------------------
def _pg_bin() -> Optional[Path]:
    for path in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(path, "initdb")):
            return Path(path)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """A throwaway cluster: ``initdb`` into a temporary directory, ``pg_ctl start`` on a free
    port of 127.0.0.1, trust authentication for user ``cpb``.  Runs as an unprivileged user
    (``postgres`` or ``nobody``) when the tests run as root, as CI does."""

    user = "cpb"

    def __init__(self) -> None:
        bindir = _pg_bin()
        if bindir is None:
            pytest.fail(
                "PostgreSQL is not installed: the db plugin's tests need a real server "
                "(.ci/setup.d/postgres.sh installs Debian's postgresql package)"
            )
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="cpb-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self.run_as: Optional[str] = None
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                try:
                    entry = pwd.getpwnam(name)
                except KeyError:
                    continue
                self.run_as = name
                os.chown(self.root, entry.pw_uid, entry.pw_gid)
                break
            else:  # pragma: no cover - every Debian image has nobody
                pytest.fail("running as root and no unprivileged user to run PostgreSQL as")
        os.chmod(self.root, 0o700)

    def _cmd(self, *args: str) -> List[str]:
        if self.run_as is None:
            return list(args)
        return ["runuser", "-u", self.run_as, "--", *args]

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            self._cmd(*args), capture_output=True, text=True, timeout=timeout, cwd=self.root
        )

    def start(self) -> None:
        init = self._run(
            str(self.bindir / "initdb"),
            "-D", str(self.data),
            "-U", self.user,
            "-A", "trust",
            "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip
        if init.returncode:
            raise RuntimeError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
        for _ in range(5):  # a free port may be taken between choosing and binding it
            self.port = _free_port()
            options = (
                f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            started = self._run(
                str(self.bindir / "pg_ctl"),
                "-D", str(self.data),
                "-l", str(self.log),
                "-o", options,
                "-w", "-t", "60",
                "start",
            )  # fmt: skip
            if started.returncode == 0:
                return
            time.sleep(0.2)
        log = self.log.read_text() if self.log.exists() else ""
        raise RuntimeError(f"pg_ctl start failed:\n{started.stderr}\n{log}")

    def stop(self) -> None:
        if self.data.exists():
            self._run(
                str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"
            )
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def conninfo(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres"

    def params(self) -> Dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port, "user": self.user, "database": "postgres"}


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()

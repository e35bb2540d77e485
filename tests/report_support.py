"""Running real ``callpyback run`` programs that serve ``/metrics``, and scraping them."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from prometheus_client.parser import text_string_to_metric_families

SERVING = re.compile(r"callpyback: serving Prometheus metrics at (http://\S+/metrics)")


def clean_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLPYBACK_")}
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(extra or {})
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Program:
    """``python -m callpyback run ARGS`` in ``cwd``; stdout/stderr lines are collected."""

    def __init__(self, args: List[str], cwd: Path, env: Optional[Dict[str, str]] = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "callpyback", "run", *args],
            cwd=cwd,
            env=clean_env(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: queue.Queue[str] = queue.Queue()
        self.stdout: List[str] = []
        self.stderr: List[str] = []
        self.threads = []
        for stream, lines in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            thread = threading.Thread(target=self._drain, args=(stream, lines), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _drain(self, stream: Any, lines: List[str]) -> None:
        for line in stream:
            lines.append(line)
            self.out.put(line)

    def wait_for(self, test: Callable[[str], Any], timeout: float = 60) -> Any:
        """The first truthy ``test(line)`` over stdout and stderr lines (seen or to come)."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.stdout + self.stderr:  # short lists: check them all each time
                found = test(line)
                if found:
                    return found
            if time.monotonic() > deadline or (self.proc.poll() is not None and self.out.empty()):
                raise AssertionError(
                    f"not seen in time; exit {self.proc.poll()}\nstdout: {''.join(self.stdout)}"
                    f"\nstderr: {''.join(self.stderr)}"
                )
            with contextlib.suppress(queue.Empty):
                self.out.get(timeout=0.1)

    def url(self) -> str:
        return str(self.wait_for(lambda line: (m := SERVING.search(line)) and m.group(1)))

    def release(self) -> None:
        """Send a line to the program's stdin (the test programs wait for one)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def stop(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.close()

    def close(self) -> None:
        """Kill the program if it still runs (a failed test), and close its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for thread in self.threads:
            thread.join(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):  # stdin of a program that is gone
                    stream.close()

    def __enter__(self) -> Program:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def scrape(url: str) -> Dict[str, Any]:
    """The families of ``url``'s exposition, parsed by prometheus_client's own parser."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def family_of(name: str, families: Dict[str, Any]) -> Any:
    for family in families.values():
        if any(s.name == name for s in family.samples):
            return family
    raise KeyError(name)


def sample(families: Dict[str, Any], name: str, **labels: str) -> float:
    """The value of sample ``name`` with these labels (any family)."""
    for s in family_of(name, families).samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    raise KeyError(f"{name}{labels}")


def eventually(check: Callable[[], Any], timeout: float = 30, interval: float = 0.2) -> Any:
    """``check()`` until it stops raising AssertionError, KeyError or OSError (a server not up
    yet, values that sync periodically)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, KeyError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(interval)

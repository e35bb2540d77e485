"""examples/ml: an ordinary numpy training script, observed only through its callpyback.toml,
run for real under `callpyback run` (per-epoch and per-step timing, the loss and accuracy
captured from the epoch's locals, alerts when the loss becomes NaN or stops improving)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

# Servers, browsers, terminals, child suites: the newest and oldest Pythons' runs
# (.ci/matrix.sh) skip these; the main run has them all.
pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ml"
EPOCH = re.compile(r"^epoch +(\d+) +loss (\S+) +accuracy (\S+)$", re.M)

DRIVER = r"""
import contextlib, io, json, runpy, sys
import callpyback.autoinstrument as auto
from callpyback import AlertingObserver, MetricsObserver, TimingObserver

example, config, *args = sys.argv[1:]
sys.path.insert(0, example)
auto.install(config)
out = io.StringIO()
sys.argv = [example + "/train.py", *args]
with contextlib.redirect_stdout(out):
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as exc:
        assert exc.code in (0, None), exc.code
observers = {type(o).__name__: o for d in auto.decorators() for o in d.observers}
metrics = observers["MetricsObserver"].get_metrics()
timing = observers["TimingObserver"].get_stats()
alerts = [
    {"rule": a.rule, "function": a.function, "firing": a.firing, "value": a.value,
     "threshold": a.threshold}
    for a in observers["AlertingObserver"].alerts
]
auto.uninstall()
print(json.dumps({
    "stdout": out.getvalue(),
    "calls": {t: m["calls"] for t, m in metrics.items()},
    "timed": {t: s["count"] for t, s in timing.items()},
    "epoch_p50": timing["tinyml.loop:train_epoch"]["p50"],
    "alerts": alerts,
}))
"""


def clean_env() -> Dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CALLPYBACK_")}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["callpyback", "run", "train.py", *args],
        cwd=EXAMPLE,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def observed(*args: str) -> Dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, str(EXAMPLE), str(EXAMPLE / "callpyback.toml"), *args],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def epochs(stdout: str) -> List[tuple]:
    return [(int(e), float(loss), float(acc)) for e, loss, acc in EPOCH.findall(stdout)]


def test_a_healthy_run_under_callpyback_run() -> None:
    """It trains, prints its own progress, and nothing alerts."""
    proc = run("--epochs", "6")
    assert proc.returncode == 0, proc.stderr
    history = epochs(proc.stdout)
    assert [e for e, _, _ in history] == [1, 2, 3, 4, 5, 6]
    assert history[-1][1] < history[0][1]  # the loss went down
    assert "alert" not in proc.stderr


def test_per_epoch_and_per_step_timing() -> None:
    """train_epoch once per epoch, train_step once per mini-batch (480 rows / 32 = 15)."""
    out = observed("--epochs", "4")
    assert out["calls"]["tinyml.loop:train_epoch"] == 4
    assert out["calls"]["tinyml.loop:train_step"] == 4 * 15
    assert out["calls"]["tinyml.loop:evaluate"] == 4 + 1  # each epoch, then the test set
    assert out["timed"]["tinyml.loop:train_epoch"] == 4
    assert out["timed"]["tinyml.loop:train_step"] == 60
    assert out["epoch_p50"] > 0
    assert out["alerts"] == []


def test_an_alert_when_the_loss_becomes_nan() -> None:
    proc = run("--lr", "40", "--epochs", "3")
    assert proc.returncode == 0, proc.stderr
    assert "alert 'step-loss-is-nan' firing for tinyml.loop:train_step" in proc.stderr
    assert "alert 'loss-is-nan' firing for tinyml.loop:train_epoch: loss is nan" in proc.stderr
    out = observed("--lr", "40", "--epochs", "3")
    firing = [a for a in out["alerts"] if a["firing"]]
    assert firing[0]["rule"] == "step-loss-is-nan"  # the first bad batch, before the epoch ends
    assert any(a["rule"] == "loss-is-nan" for a in firing)


def test_an_alert_when_the_loss_stops_improving() -> None:
    """A learning rate far too low: the captured loss improves by less than min_delta."""
    out = observed("--lr", "0.0002", "--epochs", "6")
    history = epochs(out["stdout"])
    fired, resolved = [a for a in out["alerts"] if a["rule"] == "loss-stopped-improving"]
    alert = fired
    assert alert["firing"] and alert["function"] == "tinyml.loop:train_epoch"
    # epoch 5 beat the best by more than min_delta (0.005): the alert resolved
    assert not resolved["firing"] and round(resolved["value"], 4) == history[4][1]
    # the rule saw the very losses the script printed: its best is epoch 1's
    assert round(alert["threshold"], 4) == history[0][1]
    assert round(alert["value"], 4) == history[3][1]  # fired at epoch 4 (patience 3)
    proc = run("--lr", "0.0002", "--epochs", "6")
    assert "alert 'loss-stopped-improving' firing for tinyml.loop:train_epoch" in proc.stderr


def test_the_script_runs_unobserved_with_plain_python() -> None:
    proc = subprocess.run(
        [sys.executable, "train.py", "--epochs", "2"],
        cwd=EXAMPLE,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and len(epochs(proc.stdout)) == 2 and proc.stderr == ""
    assert "import callpyback" not in "".join(p.read_text() for p in EXAMPLE.rglob("*.py"))

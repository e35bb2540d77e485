"""AlertingObserver's value rules: ``nan`` and ``plateau`` over a captured variable or the
returned value (training loops: the loss became NaN, the loss stopped improving)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, List

import pytest

import callpyback as cpb
from callpyback import AlertingObserver, AlertRule, CallPyBack, ConfigurationError


def epoch_runner(rules: List[AlertRule], alerts: List[Any], resolved: List[Any]) -> Any:
    observer = AlertingObserver(rules, on_alert=alerts.append, on_resolve=resolved.append)

    @CallPyBack(observers=[observer], variable_names=["loss", "accuracy"])
    def train_epoch(loss_value: float, accuracy_value: float = 0.5) -> Any:
        loss = loss_value
        accuracy = accuracy_value
        return loss, accuracy

    return train_epoch, observer


def test_nan_fires_when_the_loss_becomes_nan_and_resolves() -> None:
    alerts: List[Any] = []
    resolved: List[Any] = []
    train_epoch, observer = epoch_runner([AlertRule.nan("loss")], alerts, resolved)
    for value in (0.9, 0.7, math.nan, math.nan, math.inf, 0.6):
        train_epoch(value)
    (alert,) = alerts
    assert alert.kind == "nan" and alert.firing and math.isnan(alert.value)
    assert alert.rule == "loss is nan" and alert.function.endswith("train_epoch")
    assert "loss is nan" in alert.message
    (back,) = resolved
    assert not back.firing and back.value == 0.6 and "finite again" in back.message
    assert observer.active() == []


def test_plateau_fires_after_patience_calls_without_improvement() -> None:
    alerts: List[Any] = []
    resolved: List[Any] = []
    rule = AlertRule.plateau("loss", patience=3, min_delta=0.01)
    train_epoch, observer = epoch_runner([rule], alerts, resolved)
    for value in (1.0, 0.5, 0.495, 0.499, 0.51):  # 0.495 is not better by more than 0.01
        train_epoch(value)
    (alert,) = alerts
    assert alert.firing and alert.threshold == 0.5 and alert.bad == 3 and alert.calls == 5
    assert "has not improved on its best 0.5 for 3 calls" in alert.message
    assert [r for r, _ in observer.active()] == [rule.name]
    train_epoch(0.3)
    (back,) = resolved
    assert not back.firing and back.value == 0.3


def test_plateau_max_mode_watches_an_accuracy() -> None:
    alerts: List[Any] = []
    rule = AlertRule.plateau("accuracy", patience=2, mode="max", name="accuracy-plateau")
    train_epoch, _ = epoch_runner([rule], alerts, [])
    for accuracy in (0.5, 0.7, 0.9, 0.85, 0.9):
        train_epoch(0.1, accuracy)
    (alert,) = alerts
    assert alert.rule == "accuracy-plateau" and alert.threshold == 0.9


def test_nan_never_counts_as_an_improvement() -> None:
    alerts: List[Any] = []
    train_epoch, _ = epoch_runner([AlertRule.plateau("loss", patience=2)], alerts, [])
    for value in (0.5, math.nan, math.nan):
        train_epoch(value)
    assert len(alerts) == 1 and alerts[0].threshold == 0.5


def test_the_returned_value_when_no_variable_is_named() -> None:
    alerts: List[Any] = []
    observer = AlertingObserver([AlertRule.nan()], on_alert=alerts.append)
    step = CallPyBack(observers=[observer])(lambda x: x)
    step(1.0)
    step(float("nan"))
    assert len(alerts) == 1 and alerts[0].rule == "value is nan"


def test_calls_without_a_number_are_not_counted() -> None:
    alerts: List[Any] = []
    observer = AlertingObserver([AlertRule.plateau("loss", patience=1)], on_alert=alerts.append)

    @CallPyBack(observers=[observer], variable_names=["loss"])
    def maybe(value: Any) -> Any:
        if value is not None:
            loss = value
            return loss
        return None

    for value in (0.5, None, None, "n/a", 0.4):
        maybe(value)
    assert alerts == []  # the calls without a loss did not count as "no improvement"


def test_window_rules_work_as_before_next_to_value_rules() -> None:
    alerts: List[Any] = []
    clock = cpb.MockTimeSource()
    observer = AlertingObserver(
        [AlertRule.error_rate(0.4, min_calls=2, name="errors"), AlertRule.nan()],
        on_alert=alerts.append,
    )

    @CallPyBack(observers=[observer], time_source=clock)
    def f(ok: bool) -> float:
        if not ok:
            raise ValueError("no")
        return 1.0

    f(True)
    with pytest.raises(ValueError):
        f(False)
    assert [a.rule for a in alerts] == ["errors"]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: AlertRule("r", "nan", 0.5), "has no threshold"),
        (lambda: AlertRule("r", "plateau", 0.1), "use min_delta"),
        (lambda: AlertRule("r", "latency", 0.1, variable="loss"), "nan and plateau rules only"),
        (lambda: AlertRule("r", "error_rate", 0.1, patience=3), "plateau rules only"),
        (lambda: AlertRule("r", "nan", mode="min"), "plateau rules only"),
        (lambda: AlertRule.plateau("loss", patience=0), "positive int"),
        (lambda: AlertRule.plateau("loss", min_delta=-1), "non-negative"),
        (lambda: AlertRule.plateau("loss", mode="lower"), "'min'"),
        (lambda: AlertRule("r", "nan", variable=""), "captured local variable"),
        (lambda: AlertRule("r", "error_rate"), "threshold must be a non-negative number"),
    ],
)
def test_bad_value_rules_are_refused(build: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        build()


def test_value_rules_from_the_config(tmp_path: Path) -> None:
    path = tmp_path / "callpyback.toml"
    path.write_text(
        """
version = 1

[observers.training]
type = "alerting"
rules = [
  { name = "loss-nan", kind = "nan", variable = "loss" },
  { name = "loss-plateau", kind = "plateau", variable = "loss", patience = 2, min_delta = 0.001 },
]

[[pipelines]]
match = ["ml.loop:train_epoch"]
observers = ["training"]
variables = ["loss"]
""",
        encoding="utf-8",
    )
    config = cpb.load_config(path)
    decorator = config.wrapper_for("ml.loop", "train_epoch")
    assert decorator is not None
    (observer,) = decorator.observers
    assert [(r.kind, r.variable, r.patience) for r in observer.rules] == [
        ("nan", "loss", None),
        ("plateau", "loss", 2),
    ]


def test_a_bad_mode_in_the_config_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "callpyback.toml"
    path.write_text(
        'version = 1\n[observers.a]\ntype = "alerting"\n'
        'rules = [{ name = "p", kind = "plateau", mode = "lower" }]\n',
        encoding="utf-8",
    )
    with pytest.raises(cpb.ConfigError) as info:
        cpb.load_config(path)
    assert "callpyback.toml:4" in str(info.value) and "'min' or 'max'" in str(info.value)

"""The [web] table: validation errors of the configuration's quality, and the drop-in."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

flask = pytest.importorskip("flask")

import callpyback  # noqa: E402
import callpyback.autoinstrument as auto  # noqa: E402
from callpyback import (  # noqa: E402
    ConfigError,
    load_config,
    plugins,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "callpyback.toml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


BASE = """
    version = 1
    [observers.metrics]
    type = "metrics"
    [observers.trail]
    type = "audit"
    path = "{trail}"
    [[pipelines]]
    name = "api"
    match = ["shop_views_for_web_tests"]
    observers = ["metrics", "trail", "web.calltree"]
    [[pipelines]]
    name = "quiet"
    match = ["nothing_matches_this_module"]
    observers = ["metrics"]
"""


def problems(tmp_path: Path, web_table: str) -> str:
    path = write(tmp_path, BASE.format(trail=tmp_path / "t.jsonl") + textwrap.dedent(web_table))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


def test_the_table_is_registered_by_the_installed_plugin(tmp_path: Path) -> None:
    found = {p.name: p for p in plugins.list_plugins()}["web"]
    assert (found.distribution, found.status) == ("callpyback-web", "loaded")
    assert set(found.components) == {("table", "web"), ("observer", "web.calltree")}
    path = write(
        tmp_path,
        BASE.format(trail=tmp_path / "t.jsonl")
        + """
        [web]
        frameworks = ["flask"]
        pipeline = "quiet"
        failure_statuses = ["5xx", 429]
        [[web.routes]]
        match = ["GET /orders/*", "POST /payments"]
        pipeline = "api"
        [[web.routes]]
        match = ["/health"]
        observe = false
    """,
    )
    table = load_config(path).tables["web"]
    assert table.frameworks == ["flask"] and table.routes[0].pipeline == "api"
    assert table.routes[1].observe is False


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        (
            '[web]\nframworks = ["flask"]\n',
            "callpyback.toml:16: web.framworks: unknown key 'framworks' in [web]",
        ),
        ('[web]\nframworks = ["flask"]\n', "did you mean 'frameworks'?"),
        (
            '[web]\nframeworks = ["flsk"]\n',
            "web.frameworks[0]: unknown framework 'flsk' (given: 'flsk'); allowed: auto, flask, "
            "starlette, fastapi, django; did you mean 'flask'?",
        ),
        (
            '[web]\npipeline = "apii"\n',
            "callpyback.toml:16: web.pipeline: unknown pipeline 'apii' (given: 'apii'); allowed: "
            "'api', 'quiet'; did you mean 'api'?",
        ),
        (
            '[[web.routes]]\nmatch = ["GTE /orders/*"]\npipeline = "api"\n',
            "web.routes[0].match[0]: unknown HTTP method 'GTE' in 'GTE /orders/*'",
        ),
        ('[[web.routes]]\nmatch = ["GTE /orders/*"]\npipeline = "api"\n', "did you mean 'GET'?"),
        (
            '[[web.routes]]\nmatch = ["GET orders"]\npipeline = "api"\n',
            "the path of 'GET orders' must start with '/'",
        ),
        (
            '[[web.routes]]\nmatch = ["/x"]\npipeline = "nope"\n',
            "callpyback.toml:17: web.routes[0].pipeline: unknown pipeline 'nope'",
        ),
        (
            '[[web.routes]]\nmatch = ["/x"]\n',
            "web.routes[0]: a route entry needs the pipeline that observes its requests; allowed: "
            'pipeline = "NAME"',
        ),
        (
            '[[web.routes]]\nmatch = ["/x"]\npipelin = "api"\n',
            "web.routes[0].pipelin: unknown key 'pipelin' in a [[web.routes]] entry",
        ),
        ('[web]\nfailure_statuses = ["6xx"]\n', "web.failure_statuses[0]: '6xx' is not a status"),
        ("[web]\nfailure_statuses = [700]\n", "status 700 is not between 100 and 599"),
        (
            '[web]\ntrace_context = "sometimes"\n',
            "web.trace_context: unknown trace_context mode (given: 'sometimes'); allowed: auto, "
            "always, never",
        ),
    ],
)
def test_errors_name_file_line_key_value_and_what_is_allowed(
    tmp_path: Path, table: str, expected: str
) -> None:
    assert expected in problems(tmp_path, table)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = problems(tmp_path, '[web]\nframeworks = ["djnago"]\ntrace_context = "x"\n')
    assert text.startswith("2 problems in ")
    assert "did you mean 'django'" in text


def test_drop_in_attaches_to_apps_created_after_install_and_detaches_exactly(
    tmp_path: Path, monkeypatch: Any
) -> None:
    trail = tmp_path / "trail.jsonl"
    views = tmp_path / "shop_views_for_web_tests.py"
    views.write_text("def price(n):\n    return n * 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write(
        tmp_path,
        BASE.format(trail=trail)
        + """
        [web]
        frameworks = ["flask"]
        [[web.routes]]
        match = ["/health"]
        observe = false
        [[web.routes]]
        match = ["GET /orders/*", "POST /payments"]
        pipeline = "api"
        [[pipelines]]
        name = "everything-else"
        match = ['re:http:\\S+ .*']
        observers = ["metrics"]
    """,
    )
    original_init = flask.Flask.__dict__["__init__"]
    auto.install(load_config(path))
    try:
        assert flask.Flask.__dict__["__init__"] is not original_init
        import shop_views_for_web_tests as views_module

        app = flask.Flask("dropin")  # no code change: created after install, attached

        @app.get("/orders/<int:order_id>")
        def order(order_id: int) -> Any:
            return {"price": views_module.price(order_id)}

        app.add_url_rule("/health", "health", lambda: "ok")
        app.add_url_rule("/other", "other", lambda: "other")
        client = app.test_client()
        assert client.get("/orders/2").json == {"price": 6}
        assert client.get("/health").data == b"ok"
        assert client.get("/other").data == b"other"
        decorators = {d.name: d for d in auto.decorators()}
        metrics = decorators["api"].observers[0]
        stats = metrics.get_metrics()
        assert stats["http:GET /orders/{order_id}"]["calls"] == 1
        assert stats["http:GET /other"]["calls"] == 1  # by the core pattern for request targets
        assert "http:GET /health" not in stats
        assert stats["shop_views_for_web_tests:price"]["calls"] == 1
        table = auto.summary_table()
        assert "http:GET /orders/{order_id}" in table
    finally:
        auto.uninstall()
    assert flask.Flask.__dict__["__init__"] is original_init
    assert not __import__("callpyback_web").instrumented(app)
    record = json.loads(trail.read_text().splitlines()[-1])
    assert record["what"] == "http:GET /orders/{order_id}"
    children = record["arguments"]["request"]["children"]
    assert [c["target"] for c in children] == ["shop_views_for_web_tests:price"]


def test_a_pipeline_that_cannot_observe_requests_fails_at_install(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version = 1
        [[pipelines]]
        name = "bounded"
        match = ["nothing_here"]
        observers = ["metrics"]
        error_handlers = [{type = "timeout", seconds = 1}]
        [web]
        frameworks = ["flask"]
        pipeline = "bounded"
    """,
    )
    from callpyback_web import _dropin

    auto.install(load_config(path))  # a failing plugin is logged; the program goes on
    try:
        assert _dropin.installed_web() is None
    finally:
        auto.uninstall()
    assert callpyback is not None

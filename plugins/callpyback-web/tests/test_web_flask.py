"""Flask through its test client: one observed call per request, ending when the body is sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

flask = pytest.importorskip("flask")

import callpyback_web as web  # noqa: E402
from callpyback_web import ErrorResponse, Response  # noqa: E402

import callpyback as cpb  # noqa: E402


def make_app(clock: cpb.MockTimeSource) -> Any:
    app = flask.Flask("shop")

    @app.get("/orders/<int:order_id>")
    def order(order_id: int) -> Any:
        current = web.current_request()
        app.config.setdefault("CURRENT", []).append(current and current.route)
        return {"id": order_id}

    @app.get("/async/<name>")
    async def hello(name: str) -> str:
        return f"hello {name}"

    @app.post("/payments")
    def pay() -> Any:
        return {"paid": len(flask.request.get_data())}, 201

    @app.get("/boom")
    def boom() -> str:
        raise ZeroDivisionError("no stock")

    @app.get("/unavailable")
    def unavailable() -> Any:
        return "later", 503

    @app.get("/teapot")
    def teapot() -> Any:
        flask.abort(418)

    @app.get("/slow")
    def slow() -> str:
        clock.advance(0.75)
        return "done"

    @app.get("/stream")
    def stream() -> Any:
        def chunks() -> Any:
            for i in range(3):
                if i:
                    clock.advance(0.2)
                yield f"chunk {i}\n"

        return flask.Response(chunks(), mimetype="text/plain")

    return app


@pytest.fixture
def app(clock: cpb.MockTimeSource, pipeline: cpb.CallPyBack) -> Any:
    return web.instrument(make_app(clock), pipeline=pipeline)


def test_target_status_and_outcome_of_a_route(app: Any, recorder: Any) -> None:
    """GET /orders/7 is http:GET /orders/{order_id}, 200, success; the raw id is nowhere."""
    response = app.test_client().get("/orders/7?x=1", headers={"X-Trace": "t"})
    assert response.json == {"id": 7}
    assert app.config["CURRENT"] == ["/orders/{order_id}"]  # current_request() in the view
    seen = recorder.only()
    assert (seen.target, seen.outcome, seen.status) == (
        "http:GET /orders/{order_id}",
        "success",
        200,
    )
    request = seen.request
    assert (request.method, request.path, request.query, request.framework) == (
        "GET",
        "/orders/7",
        "x=1",
        "flask",
    )
    assert request.headers["x-trace"] == "t"
    assert seen.value == Response(200, len(response.data), None)
    assert "7" not in seen.target


def test_async_view(app: Any, recorder: Any) -> None:
    assert app.test_client().get("/async/ada").data == b"hello ada"
    assert (recorder.only().target, recorder.only().status) == ("http:GET /async/{name}", 200)


def test_post_with_a_body_has_its_request_size(app: Any, recorder: Any) -> None:
    assert app.test_client().post("/payments", data=b"x" * 12).status_code == 201
    seen = recorder.only()
    assert (seen.target, seen.status, seen.request.request_size) == ("http:POST /payments", 201, 12)


def test_404_shares_one_label_and_is_not_a_failure(app: Any, recorder: Any) -> None:
    client = app.test_client()
    for path in ("/nope", "/orders/abc", "/a/b/c"):
        assert client.get(path).get_data() and True
    assert [(s.target, s.outcome, s.status) for s in recorder.calls] == [
        ("http:GET <unmatched>", "success", 404)
    ] * 3


def test_an_exception_is_a_failure_with_its_own_type(app: Any, recorder: Any) -> None:
    """Flask turned the exception into a 500: the call fails with that exception."""
    response = app.test_client().get("/boom")
    assert response.status_code == 500 and response.data
    seen = recorder.only()
    assert (seen.target, seen.outcome, seen.status) == ("http:GET /boom", "failure", 500)
    assert type(seen.exception) is ZeroDivisionError and str(seen.exception) == "no stock"


def test_an_exception_that_propagates_still_propagates(
    clock: Any, pipeline: Any, recorder: Any
) -> None:
    app = make_app(clock)
    app.testing = True  # PROPAGATE_EXCEPTIONS: the client sees the exception
    web.instrument(app, pipeline=pipeline)
    with pytest.raises(ZeroDivisionError, match="no stock"):
        app.test_client().get("/boom")
    assert (recorder.only().outcome, type(recorder.only().exception)) == (
        "failure",
        ZeroDivisionError,
    )


def test_a_5xx_response_is_a_failure_and_a_4xx_is_not(app: Any, recorder: Any) -> None:
    client = app.test_client()
    assert client.get("/unavailable").data == b"later"
    assert client.get("/teapot").status_code == 418 and client.get("/teapot").data
    failed, teapot, _ = recorder.calls
    assert (failed.outcome, failed.status, type(failed.exception)) == (
        "failure",
        503,
        ErrorResponse,
    )
    assert str(failed.exception) == "http:GET /unavailable answered with status 503"
    assert (teapot.outcome, teapot.status) == ("success", 418)


def test_4xx_can_be_configured_as_failures(clock: Any, pipeline: Any, recorder: Any) -> None:
    app = web.instrument(make_app(clock), web=web.Web(pipeline, failure_statuses=["4xx", "5xx"]))
    app.test_client().get("/teapot").get_data()
    assert (recorder.only().outcome, recorder.only().status) == ("failure", 418)


def test_a_slow_route_reports_its_time(app: Any, recorder: Any) -> None:
    app.test_client().get("/slow").get_data()
    assert recorder.only().execution_time == pytest.approx(0.75)


def test_streaming_ends_when_the_body_was_sent(app: Any, recorder: Any) -> None:
    """Three chunks 0.2 s apart: the call lasts 0.4 s, not the view's return."""
    response = app.test_client().get("/stream")
    assert recorder.calls == []  # the view returned; the body is not sent yet
    assert response.get_data() == b"chunk 0\nchunk 1\nchunk 2\n"
    seen = recorder.only()
    assert (seen.outcome, seen.status, seen.execution_time) == ("success", 200, pytest.approx(0.4))
    assert seen.request.response_size == 24


def test_a_client_that_goes_away_mid_stream_is_cancelled(app: Any, recorder: Any) -> None:
    response = app.test_client().get("/stream")
    chunks = iter(response.response)
    assert next(chunks) == b"chunk 0\n"
    response.close()  # what a server does when the client disconnects
    assert (recorder.only().outcome, recorder.only().status) == ("cancelled", 200)


def test_responses_are_identical_with_and_without_instrumentation(
    clock: Any, pipeline: Any
) -> None:
    def run(app: Any) -> list:
        client = app.test_client()
        out = []
        for method, path in [
            ("GET", "/orders/3"),
            ("GET", "/async/x"),
            ("POST", "/payments"),
            ("GET", "/nope"),
            ("GET", "/boom"),
            ("GET", "/unavailable"),
            ("GET", "/teapot"),
            ("GET", "/stream"),
        ]:
            r = client.open(path, method=method, data=b"abc")
            out.append((r.status_code, sorted(r.headers.items()), r.get_data()))
        return out

    assert run(web.instrument(make_app(clock), pipeline=pipeline)) == run(make_app(clock))


def test_uninstrument_restores_the_app(clock: Any, pipeline: Any, recorder: Any) -> None:
    app = make_app(clock)
    original = app.wsgi_app
    web.instrument(app, pipeline=pipeline)
    web.instrument(app, pipeline=pipeline)  # twice: a no-op
    assert web.instrumented(app) and app.wsgi_app is not original
    assert web.uninstrument(app) is True
    assert app.wsgi_app == original and not web.instrumented(app)
    app.test_client().get("/orders/1").get_data()
    assert recorder.calls == []
    assert web.uninstrument(app) is False


def test_observed_view_functions_are_children_of_the_request(
    clock: Any, recorder: Any, tmp_path: Path
) -> None:
    """Functions observed in their own pipeline (web.calltree) hang under the request."""
    tree = web.CallTreeObserver()
    functions = cpb.CallPyBack(observers=[tree, recorder])

    @functions
    def price(n: int) -> int:
        return tax(n * 10)

    @functions
    def tax(amount: int) -> int:
        return amount // 5

    app = flask.Flask("tree")

    @app.get("/quote/<int:n>")
    def quote(n: int) -> Any:
        return {"total": price(n)}

    web.instrument(app, pipeline=cpb.CallPyBack(observers=[recorder], time_source=clock))
    assert app.test_client().get("/quote/3").json == {"total": 6}
    price(1)  # outside a request: no parent, nothing recorded
    request = recorder.only().request
    (child,) = request.children
    assert (child.target, child.outcome) == (
        f"{__name__}:test_observed_view_functions_are_children_of_the_request.<locals>.price",
        "success",
    )
    assert [c.target.rsplit(".", 1)[-1] for c in child.children] == ["tax"]
    assert recorder.functions[:2] == [
        (child.children[0].target, request.id),
        (child.target, request.id),
    ]
    assert recorder.functions[2][1] is None


def test_audit_trail_redacts_authorization_and_cookie(clock: Any, tmp_path: Path) -> None:
    from callpyback.observers import AuditObserver

    trail = tmp_path / "audit.jsonl"
    audit = AuditObserver(trail)
    app = web.instrument(make_app(clock), pipeline=cpb.CallPyBack(observers=[audit]))
    client = app.test_client()
    client.set_cookie("session", "abcdef123")
    client.get("/orders/9", headers={"Authorization": "Bearer s3cr3t-token"}).get_data()
    audit.close()
    (record,) = [json.loads(line) for line in trail.read_text().splitlines()]
    assert (record["what"], record["outcome"]) == ("http:GET /orders/{order_id}", "success")
    headers = record["arguments"]["request"]["headers"]
    assert "s3cr3t-token" not in trail.read_text() and "abcdef123" not in trail.read_text()
    assert (
        headers["authorization"] != "Bearer s3cr3t-token"
        and headers["cookie"] != "session=abcdef123"
    )
    assert record["arguments"]["request"]["route"] == "/orders/{order_id}"


def test_metrics_key_on_the_route_template(clock: Any) -> None:
    metrics = cpb.MetricsObserver()
    app = web.instrument(make_app(clock), pipeline=cpb.CallPyBack(observers=[metrics]))
    client = app.test_client()
    for i in range(5):
        client.get(f"/orders/{i}").get_data()
    client.get("/boom").get_data()
    stats = metrics.get_metrics()
    assert sorted(stats) == ["http:GET /boom", "http:GET /orders/{order_id}"]
    assert stats["http:GET /orders/{order_id}"]["calls"] == 5
    assert stats["http:GET /boom"]["failures"] == 1

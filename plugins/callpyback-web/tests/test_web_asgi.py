"""Starlette and FastAPI through Starlette's TestClient (and a raw ASGI call for disconnects)."""

from __future__ import annotations

import asyncio
from typing import Any, List

import pytest

pytest.importorskip("starlette")
fastapi = pytest.importorskip("fastapi")

import callpyback_web as web  # noqa: E402
from callpyback_web import ErrorResponse  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.background import BackgroundTask  # noqa: E402
from starlette.exceptions import HTTPException  # noqa: E402
from starlette.middleware.cors import CORSMiddleware  # noqa: E402
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse  # noqa: E402
from starlette.routing import Mount, Route  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

import callpyback as cpb  # noqa: E402


def make_starlette(clock: cpb.MockTimeSource, after: List[str]) -> Starlette:
    async def order(request: Any) -> Any:
        return JSONResponse({"id": int(request.path_params["order_id"])})

    def sync_order(request: Any) -> Any:  # a sync endpoint: Starlette runs it in a thread
        current = web.current_request()
        return JSONResponse({"route": current and current.route})

    async def boom(request: Any) -> Any:
        raise ZeroDivisionError("no stock")

    async def teapot(request: Any) -> Any:
        raise HTTPException(418)

    async def unavailable(request: Any) -> Any:
        return PlainTextResponse("later", status_code=503)

    async def slow(request: Any) -> Any:
        clock.advance(0.75)
        return PlainTextResponse("done")

    async def stream(request: Any) -> Any:
        async def chunks() -> Any:
            for i in range(3):
                if i:
                    clock.advance(0.2)
                    await asyncio.sleep(0)
                yield f"chunk {i}\n"

        def background() -> None:
            clock.advance(5)  # after the body: not part of the request's call
            after.append("background")

        return StreamingResponse(chunks(), background=BackgroundTask(background))

    async def item(request: Any) -> Any:
        return PlainTextResponse(request.path_params["name"])

    return Starlette(
        routes=[
            Route("/orders/{order_id:int}", order),
            Route("/sync/{x}", sync_order),
            Route("/boom", boom),
            Route("/teapot", teapot),
            Route("/unavailable", unavailable),
            Route("/slow", slow),
            Route("/stream", stream),
            Mount("/shop", routes=[Route("/items/{name}", item)]),
        ]
    )


@pytest.fixture
def after() -> List[str]:
    return []


@pytest.fixture
def app(clock: Any, pipeline: Any, after: List[str]) -> Starlette:
    return web.instrument(make_starlette(clock, after), pipeline=pipeline)  # type: ignore[no-any-return]


def get(app: Any, path: str, **kw: Any) -> Any:
    with TestClient(app, raise_server_exceptions=False) as client:
        return client.get(path, **kw)


def test_async_and_sync_routes(app: Any, recorder: Any) -> None:
    assert get(app, "/orders/12?x=1").json() == {"id": 12}
    assert get(app, "/sync/a").json() == {"route": "/sync/{x}"}  # current in the worker thread
    assert get(app, "/shop/items/tea").text == "tea"
    assert [(s.target, s.outcome, s.status) for s in recorder.calls] == [
        ("http:GET /orders/{order_id}", "success", 200),
        ("http:GET /sync/{x}", "success", 200),
        ("http:GET /shop/items/{name}", "success", 200),
    ]
    request = recorder.calls[0].request
    assert (request.path, request.query, request.framework) == ("/orders/12", "x=1", "starlette")


def test_404_and_405_share_one_label(app: Any, recorder: Any) -> None:
    assert get(app, "/nope").status_code == 404
    with TestClient(app) as client:
        assert client.post("/slow").status_code == 405
    assert [(s.target, s.outcome, s.status) for s in recorder.calls] == [
        ("http:GET <unmatched>", "success", 404),
        ("http:POST <unmatched>", "success", 405),
    ]


def test_exception_is_a_failure_and_still_reaches_the_server(app: Any, recorder: Any) -> None:
    assert get(app, "/boom").status_code == 500
    with TestClient(app) as client, pytest.raises(ZeroDivisionError, match="no stock"):
        client.get("/boom")
    for seen in recorder.calls:
        assert (seen.target, seen.outcome, seen.status) == ("http:GET /boom", "failure", 500)
        assert type(seen.exception) is ZeroDivisionError


def test_5xx_fails_4xx_does_not(app: Any, recorder: Any) -> None:
    assert get(app, "/unavailable").text == "later"
    assert get(app, "/teapot").status_code == 418
    failed, teapot = recorder.calls
    assert (failed.outcome, failed.status, type(failed.exception)) == (
        "failure",
        503,
        ErrorResponse,
    )
    assert (teapot.outcome, teapot.status) == ("success", 418)


def test_slow_route(app: Any, recorder: Any) -> None:
    get(app, "/slow")
    assert recorder.only().execution_time == pytest.approx(0.75)


def test_streaming_ends_at_the_final_body_and_background_runs_after(
    app: Any, recorder: Any, after: List[str]
) -> None:
    assert get(app, "/stream").text == "chunk 0\nchunk 1\nchunk 2\n"
    seen = recorder.only()
    assert (seen.outcome, seen.status) == ("success", 200)
    assert seen.execution_time == pytest.approx(0.4)  # not the 5 s of the background task
    assert seen.request.response_size == 24 and after == ["background"]


def test_client_disconnect_mid_stream_is_cancelled(
    clock: Any, recorder: Any, pipeline: Any
) -> None:
    gate = asyncio.Event

    async def endless(request: Any) -> Any:
        async def chunks() -> Any:
            yield "first\n"
            await asyncio.sleep(3600)
            yield "never\n"

        return StreamingResponse(chunks())

    app = web.instrument(Starlette(routes=[Route("/sse", endless)]), pipeline=pipeline)
    sent: List[Any] = []

    async def main() -> None:
        disconnect = gate()

        async def receive() -> Any:
            await disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message: Any) -> None:
            sent.append(message)
            if message.get("body") == b"first\n":
                disconnect.set()

        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/sse",
            "raw_path": b"/sse",
            "root_path": "",
            "query_string": b"",
            "headers": [],
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 80),
        }
        await asyncio.wait_for(app(scope, receive, send), 5)

    asyncio.run(main())
    assert sent[0]["status"] == 200
    assert (recorder.only().target, recorder.only().outcome) == ("http:GET /sse", "cancelled")


def test_identical_responses_with_and_without(clock: Any, pipeline: Any, after: List[str]) -> None:
    def run(app: Any) -> list:
        out = []
        with TestClient(app, raise_server_exceptions=False) as client:
            for path in (
                "/orders/3",
                "/sync/b",
                "/nope",
                "/boom",
                "/teapot",
                "/unavailable",
                "/stream",
                "/shop/items/x",
            ):
                r = client.get(path)
                out.append((r.status_code, sorted(r.headers.items()), r.content))
        return out

    plain = run(make_starlette(clock, after))
    for i, row in enumerate(plain):
        if row[2].startswith(b'{"route"'):
            plain[i] = (row[0], row[1], row[2])
    observed = run(web.instrument(make_starlette(clock, after), pipeline=pipeline))
    assert [r for r in observed if b"route" not in r[2]] == [
        r for r in plain if b"route" not in r[2]
    ]


def test_user_middleware_before_and_after_and_cors_wrapped(
    clock: Any, pipeline: Any, recorder: Any
) -> None:
    """Middleware added before or after instrument(), and an app wrapped in CORS, all work;
    uninstrument restores the app."""
    inner = make_starlette(clock, [])
    inner.add_middleware(CORSMiddleware, allow_origins=["*"])  # before
    wrapped = CORSMiddleware(inner, allow_origins=["https://a.example"])
    assert web.instrument(wrapped, pipeline=pipeline) is wrapped
    inner.add_middleware(CORSMiddleware, allow_origins=["*"])  # after: the stack is built later
    assert get(wrapped, "/orders/1", headers={"Origin": "https://a.example"}).json() == {"id": 1}
    assert recorder.only().target == "http:GET /orders/{order_id}"
    assert web.uninstrument(wrapped) is True
    assert "build_middleware_stack" not in vars(inner)
    get(wrapped, "/orders/2")
    assert len(recorder.calls) == 1


def test_fastapi_routes_included_routers_and_async_sync(pipeline: Any, recorder: Any) -> None:
    app = fastapi.FastAPI()
    items = fastapi.APIRouter(prefix="/items")
    nested = fastapi.APIRouter(prefix="/{item_id}/reviews")

    @items.get("/{item_id}")
    def read_item(item_id: int) -> Any:
        return {"id": item_id}

    @nested.get("/{review_id}")
    async def review(item_id: int, review_id: int) -> Any:
        return {"item": item_id, "review": review_id}

    items.include_router(nested)
    app.include_router(items)

    @app.get("/orders/{order_id}")
    async def order(order_id: int) -> Any:
        if order_id == 0:
            raise fastapi.HTTPException(404)
        return {"id": order_id}

    @app.post("/payments")
    async def pay(body: dict) -> Any:
        return body

    web.instrument(app, pipeline=pipeline)
    with TestClient(app) as client:
        assert client.get("/items/5").json() == {"id": 5}
        assert client.get("/items/5/reviews/2").json() == {"item": 5, "review": 2}
        assert client.get("/orders/8").json() == {"id": 8}
        assert client.get("/orders/0").status_code == 404
        assert client.post("/payments", json={"amount": 3}).json() == {"amount": 3}
        assert client.get("/missing").status_code == 404
    assert [(s.target, s.outcome, s.status) for s in recorder.calls] == [
        ("http:GET /items/{item_id}", "success", 200),
        ("http:GET /items/{item_id}/reviews/{review_id}", "success", 200),
        ("http:GET /orders/{order_id}", "success", 200),
        ("http:GET /orders/{order_id}", "success", 404),
        ("http:POST /payments", "success", 200),
        ("http:GET <unmatched>", "success", 404),
    ]
    assert recorder.calls[4].request.request_size == len(b'{"amount":3}')
    assert {s.request.framework for s in recorder.calls} == {"fastapi"}

"""Django through its test Client and AsyncClient (settings in this file)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Iterator, List

import pytest

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="callpyback-web-tests",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )
    django.setup()

import callpyback_web as web  # noqa: E402
from callpyback_web import ErrorResponse  # noqa: E402
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse  # noqa: E402
from django.test import AsyncClient, Client, override_settings  # noqa: E402
from django.urls import path, re_path  # noqa: E402

import callpyback as cpb  # noqa: E402

CLOCK: List[cpb.MockTimeSource] = []
TREE = web.CallTreeObserver()
FUNCTIONS = cpb.CallPyBack(observers=[TREE])


@FUNCTIONS
def lookup(order_id: int) -> int:
    return order_id * 2


def order(request: Any, order_id: int) -> Any:
    return JsonResponse(
        {
            "id": order_id,
            "double": lookup(order_id),
            "thread": threading.current_thread().name != "MainThread",
        }
    )


async def async_order(request: Any, order_id: int) -> Any:
    await asyncio.sleep(0)
    return JsonResponse({"id": order_id, "double": lookup(order_id)})


def boom(request: Any) -> Any:
    raise ZeroDivisionError("no stock")


def unavailable(request: Any) -> Any:
    return HttpResponse("later", status=503)


def slow(request: Any) -> Any:
    CLOCK[0].advance(0.75)
    return HttpResponse("done")


def stream(request: Any) -> Any:
    def chunks() -> Iterator[str]:
        for i in range(3):
            if i:
                CLOCK[0].advance(0.2)
            yield f"chunk {i}\n"

    return StreamingHttpResponse(chunks())


async def astream(request: Any) -> Any:
    async def chunks() -> Any:
        for i in range(3):
            if i:
                CLOCK[0].advance(0.2)
            yield f"chunk {i}\n"

    return StreamingHttpResponse(chunks())


def article(request: Any, year: str) -> Any:
    return HttpResponse(year)


urlpatterns = [
    path("orders/<int:order_id>/", order),
    path("async/<int:order_id>/", async_order),
    path("boom/", boom),
    path("unavailable/", unavailable),
    path("slow/", slow),
    path("stream/", stream),
    path("astream/", astream),
    re_path(r"^articles/(?P<year>[0-9]{4})/$", article),
]

MIDDLEWARE = ["callpyback_web.django.CallPyBackMiddleware"]


@pytest.fixture(autouse=True)
def _django(clock: cpb.MockTimeSource, pipeline: Any) -> Iterator[None]:
    CLOCK[:] = [clock]
    web.configure_django(web.Web(pipeline))
    with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE):
        yield
    web.configure_django(None)


def test_sync_and_async_views(recorder: Any) -> None:
    client = Client()
    assert client.get("/orders/4/?q=1").json()["id"] == 4
    assert client.get("/async/5/").json() == {"id": 5, "double": 10}
    assert client.get("/articles/2024/").content == b"2024"
    assert [(s.target, s.outcome, s.status) for s in recorder.calls] == [
        ("http:GET /orders/{order_id}/", "success", 200),
        ("http:GET /async/{order_id}/", "success", 200),
        ("http:GET /articles/{year}/", "success", 200),
    ]
    request = recorder.calls[0].request
    assert (request.path, request.query, request.framework) == ("/orders/4/", "q=1", "django")


def test_404_500_and_503(recorder: Any) -> None:
    client = Client(raise_request_exception=False)
    assert client.get("/nope/").status_code == 404
    assert client.get("/boom/").status_code == 500
    assert client.get("/unavailable/").content == b"later"
    nope, boomed, later = recorder.calls
    assert (nope.target, nope.outcome, nope.status) == ("http:GET <unmatched>", "success", 404)
    assert (boomed.target, boomed.outcome, boomed.status) == ("http:GET /boom/", "failure", 500)
    assert type(boomed.exception) is ZeroDivisionError
    assert (later.outcome, type(later.exception)) == ("failure", ErrorResponse)


def test_the_client_still_raises_the_views_exception(recorder: Any) -> None:
    with pytest.raises(ZeroDivisionError):
        Client().get("/boom/")
    assert recorder.only().outcome == "failure"


def test_slow_and_streaming(recorder: Any) -> None:
    client = Client()
    client.get("/slow/")
    response = client.get("/stream/")
    assert len(recorder.calls) == 1  # the stream is not consumed yet
    assert b"".join(response.streaming_content) == b"chunk 0\nchunk 1\nchunk 2\n"
    slow_call, streamed = recorder.calls
    assert slow_call.execution_time == pytest.approx(0.75)
    assert (streamed.outcome, streamed.execution_time) == ("success", pytest.approx(0.4))
    assert streamed.request.response_size == 24


def test_async_client(recorder: Any) -> None:
    async def main() -> List[Any]:
        client = AsyncClient(raise_request_exception=False)
        out = [
            await client.get("/async/7/"),
            await client.get("/orders/8/"),
            await client.get("/boom/"),
            await client.get("/slow/"),
        ]
        streamed = await client.get("/astream/")
        out.append(b"".join([chunk async for chunk in streamed.streaming_content]))
        return out

    first, second, boomed, _, body = asyncio.run(main())
    assert first.json() == {"id": 7, "double": 14}
    assert second.json()["thread"] is True  # a sync view under ASGI runs in a worker thread
    assert boomed.status_code == 500 and body == b"chunk 0\nchunk 1\nchunk 2\n"
    assert [(s.target, s.outcome) for s in recorder.calls] == [
        ("http:GET /async/{order_id}/", "success"),
        ("http:GET /orders/{order_id}/", "success"),
        ("http:GET /boom/", "failure"),
        ("http:GET /slow/", "success"),
        ("http:GET /astream/", "success"),
    ]
    assert recorder.calls[3].execution_time == pytest.approx(0.75)


def test_observed_functions_are_children_in_sync_async_and_threaded_views(recorder: Any) -> None:
    Client().get("/orders/2/")

    async def main() -> None:
        client = AsyncClient()
        await client.get("/async/3/")
        await client.get("/orders/4/")  # a sync view run in a thread

    asyncio.run(main())
    for seen in recorder.calls:
        (child,) = seen.request.children
        assert (child.target, child.outcome, child.request_id) == (
            f"{__name__}:lookup",
            "success",
            seen.request.id,
        )


def test_identical_responses_with_and_without(recorder: Any) -> None:
    paths = ["/orders/1/", "/async/2/", "/nope/", "/boom/", "/unavailable/", "/stream/"]

    def run() -> List[Any]:
        client = Client(raise_request_exception=False)
        out = []
        for p in paths:
            r = client.get(p)
            body = b"".join(r.streaming_content) if r.streaming else r.content
            out.append((r.status_code, sorted(r.headers.items()), body))
        return out

    observed = run()
    with override_settings(MIDDLEWARE=[]):
        plain = run()
    assert observed == plain and len(recorder.calls) == len(paths)


def test_uninstrumented_handler_gets_the_middleware_outside_its_stack(
    pipeline: Any, recorder: Any
) -> None:
    from django.core.handlers.wsgi import WSGIHandler

    with override_settings(MIDDLEWARE=[]):
        handler = WSGIHandler()
        web.instrument(handler, pipeline=pipeline)
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/orders/6/",
            "SERVER_NAME": "x",
            "SERVER_PORT": "80",
            "wsgi.input": __import__("io").BytesIO(),
            "wsgi.url_scheme": "http",
        }
        statuses: List[str] = []
        result = handler(environ, lambda status, headers: statuses.append(status))
        body = b"".join(result)
        result.close()
        assert statuses == ["200 OK"] and b'"id": 6' in body
        assert recorder.only().target == "http:GET /orders/{order_id}/"
        assert web.uninstrument(handler) is True
        b"".join(handler(environ, lambda *a: None))
        assert len(recorder.calls) == 1

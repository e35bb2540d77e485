"""Web requests: what the callpyback-web integration adds per request on a trivial route.

Each case sends one GET through the framework's own test client to an app that returns a short
text, instrumented with a pipeline holding one MetricsObserver, against the same app without
the integration, in the same process (alternating windows).  Target: at most 1.10x.
"""

from __future__ import annotations

from typing import Any, Callable

from _harness import Case


def _pipeline() -> Any:
    import callpyback as cpb

    return cpb.CallPyBack(observers=[cpb.MetricsObserver()])


def _flask(instrumented: bool) -> Callable[[], Any]:
    import callpyback_web
    from flask import Flask

    app = Flask("bench")
    app.add_url_rule("/items/<int:item_id>", "item", lambda item_id: "ok")
    if instrumented:
        callpyback_web.instrument(app, pipeline=_pipeline())
    client = app.test_client()

    def op() -> Any:
        return client.get("/items/1").get_data()

    return op


def _starlette(instrumented: bool) -> Callable[[], Any]:
    import callpyback_web
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    async def item(request: Any) -> Any:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/items/{item_id}", item)])
    if instrumented:
        callpyback_web.instrument(app, pipeline=_pipeline())
    client = TestClient(app)
    client.__enter__()  # one portal for the whole run

    def op() -> Any:
        return client.get("/items/1").content

    return op


def _django(instrumented: bool) -> Callable[[], Any]:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="bench",
            ALLOWED_HOSTS=["*"],
            ROOT_URLCONF=__name__,
            MIDDLEWARE=[],
            INSTALLED_APPS=[],
        )
        django.setup()
    import callpyback_web
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import Client

    client = Client()
    if instrumented:
        handler = WSGIHandler()
        client.handler.load_middleware()
        callpyback_web.instrument(client.handler, pipeline=_pipeline())
        del handler

    def op() -> Any:
        return client.get("/items/1").content

    return op


def _item(request: Any, item_id: int) -> Any:
    from django.http import HttpResponse

    return HttpResponse("ok")


def _urls() -> list:
    from django.urls import path

    return [path("items/<int:item_id>", _item)]


def __getattr__(name: str) -> Any:  # ROOT_URLCONF = this module
    if name == "urlpatterns":
        return _urls()
    raise AttributeError(name)


CASES = [
    Case(
        "Flask test client, trivial route, one MetricsObserver vs no integration",
        build=lambda: _flask(True),
        base_build=lambda: _flask(False),
        group="web",
        target=1.10,
    ),
    Case(
        "Starlette TestClient, trivial route, one MetricsObserver vs no integration",
        build=lambda: _starlette(True),
        base_build=lambda: _starlette(False),
        group="web",
        target=1.10,
    ),
    Case(
        "Django test Client, trivial route, one MetricsObserver vs no integration",
        build=lambda: _django(True),
        base_build=lambda: _django(False),
        group="web",
        target=1.10,
    ),
]

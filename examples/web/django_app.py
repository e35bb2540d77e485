"""The shop as a one-file Django project, served by wsgiref.

callpyback run examples/web/django_app.py               # serve, run the demo requests, report
callpyback run examples/web/django_app.py --serve 8000  # serve until Ctrl-C / SIGTERM
"""

from __future__ import annotations

import json
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="demo",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    LOGGING_CONFIG=None,
)
django.setup()

import _demo  # noqa: E402
import shop_logic  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import Http404, HttpResponse, JsonResponse, StreamingHttpResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402


def order(request, order_id):
    try:
        return JsonResponse({"id": order_id, "price": shop_logic.price(order_id)})
    except KeyError:
        raise Http404 from None


def order_stream(request, order_id):
    return StreamingHttpResponse(shop_logic.progress(order_id), content_type="text/event-stream")


@csrf_exempt
def payments(request):
    order_id = json.loads(request.body)["order_id"]
    return JsonResponse({"status": shop_logic.charge(shop_logic.price(order_id))})


def health(request):
    return HttpResponse("ok")


urlpatterns = [
    path("orders/<int:order_id>", order),
    path("orders/<int:order_id>/stream", order_stream),
    path("payments", payments),
    path("health", health),
]


class Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    _demo.print_report_at_exit()
    port = _demo.port_argument()
    server = make_server("127.0.0.1", port or 0, get_wsgi_application(), handler_class=Quiet)
    if port is not None:
        print(f"serving on http://127.0.0.1:{server.server_port}", flush=True)
        _demo.serve_until_sigterm(server)
        return
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _demo.drive(f"http://127.0.0.1:{server.server_port}")
    server.shutdown()


if __name__ == "__main__":
    main()

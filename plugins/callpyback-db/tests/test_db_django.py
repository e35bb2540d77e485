"""Django's sqlite backend (which passes its own cursor class) with the integration enabled:
a small ORM flow runs unchanged and its queries are observed.  In a subprocess, because
Django's settings are process-wide."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import json, sqlite3, sys
    import callpyback, callpyback_db

    seen = []
    pipeline = callpyback.CallPyBack(observers=[callpyback.on_completion(
        lambda function_info, outcome, arguments: seen.append(
            [function_info.target, outcome, arguments["statement"].text]))])
    callpyback_db.instrument(sqlite3, pipeline)

    import django
    from django.conf import settings
    settings.configure(
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": sys.argv[1]}},
        INSTALLED_APPS=[], USE_TZ=True, DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    )
    django.setup()
    from django.db import connection, models, transaction

    class Order(models.Model):
        card = models.CharField(max_length=20)
        total = models.IntegerField()

        class Meta:
            app_label = "shop"

    with connection.schema_editor() as editor:
        editor.create_model(Order)
    Order.objects.create(card="4111111111111111", total=10)
    Order.objects.create(card="5500000000000004", total=25)
    with transaction.atomic():
        Order.objects.filter(total__gt=20).update(total=30)
    totals = sorted(Order.objects.values_list("total", flat=True))
    print(json.dumps({"totals": totals, "seen": seen,
                      "raw_connection": type(connection.connection).__mro__[-3].__module__}))
    """
)


def test_a_small_django_orm_flow(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "django.db")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.splitlines()[-1])
    assert out["totals"] == [10, 30]
    seen = out["seen"]
    targets = [t for t, _, _ in seen]
    assert "db:CREATE TABLE shop_order" in targets
    assert targets.count("db:INSERT shop_order") == 2
    assert "db:UPDATE shop_order" in targets and "db:SELECT shop_order" in targets
    assert all(outcome == "success" for _, outcome, _ in seen)
    # Django's own cursor converted %s to ?; the observed text is what reached sqlite3, and
    # the card numbers it bound are nowhere in it
    insert = next(text for t, _, text in seen if t == "db:INSERT shop_order")
    assert "?" in insert and "%s" not in insert
    assert not any("4111111111111111" in text for _, _, text in seen)

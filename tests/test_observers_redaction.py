"""Redactor: keys, patterns, structures, exception text and stand-ins, and the no-leak property."""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import sys
import types
from typing import Any, Callable, List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import callpyback as cpb
from callpyback import ConfigurationError, LoggingObserver, Redactor
from callpyback.handlers import LoggingErrorHandler
from callpyback.observers.redaction import RedactedError

M = "[REDACTED]"
Creds = collections.namedtuple("Creds", "user password")


@dataclasses.dataclass
class Login:
    user: str
    client_secret: str


class Client:
    """An object that is shown by a repr carrying its token."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:
        return f"Client(token={self.token!r}, region='eu')"


class Formatted(logging.Handler):
    """A real handler: keeps each record and the text its formatter makes of it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s | %(exception)s"))
        self.records: List[logging.LogRecord] = []
        self.lines: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if not hasattr(record, "exception"):
            record.exception = None
        self.lines.append(self.format(record))

    def everything(self) -> str:
        """All a handler could write: the formatted text and every attribute of the records."""
        return "\n".join(self.lines) + "\n".join(repr(vars(r)) for r in self.records)


def capture(name: str) -> tuple[logging.Logger, Formatted]:
    log = logging.getLogger(name)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    for h in list(log.handlers):
        log.removeHandler(h)
    handler = Formatted()
    log.addHandler(handler)
    return log, handler


# --- text ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("card 4111111111111111 ok", f"card {M} ok"),
        ("card 4111 1111 1111 1111 ok", f"card {M} ok"),
        ("card 4111-1111-1111-1111 ok", f"card {M} ok"),
        ("amex 378282246310005", f"amex {M}"),
        ("card4111111111111111x", f"card{M}x"),  # glued to letters
        ("ref 1234 4111 1111 1111 1111 end", f"ref 1234 {M} end"),  # next to another number
        ("order 4111111111111112", "order 4111111111111112"),  # fails the Luhn check: kept
        ("id 12345678901234567890123", "id 12345678901234567890123"),  # too long for a card
    ],
)
def test_card_numbers_with_and_without_separators(text, expected):
    """Luhn-valid card numbers are masked wherever they sit; other digit runs are kept."""
    assert Redactor().redact_text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("namespace(user='ann', password='hunter2')", f"namespace(user='ann', password='{M}')"),
        ("{'password': 'hunter2', 'n': 1}", f"{{'password': '{M}', 'n': 1}}"),
        ('{"api_key": "k-991", "n": 1}', f'{{"api_key": "{M}", "n": 1}}'),
        ("GET /items?access_token=abc123&page=2", f"GET /items?access_token={M}&page=2"),
        (
            "host=db user=app password=pa55 dbname=shop",
            f"host=db user=app password={M} dbname=shop",
        ),
        ("Authorization: Basic dXNlcjpwYXNz\nAccept: */*", f"Authorization: {M}\nAccept: */*"),
        ("Cookie: sid=abc; theme=dark", f"Cookie: {M}"),
        ("X-Api-Key: k-991", f"X-Api-Key: {M}"),
        ("Conn(password=Secret('a, b', n=[1, 2]), db='x')", f"Conn(password={M}, db='x')"),
        (
            "[('Authorization', 'Basic dXNl'), ('Accept', 'json')]",
            f"[('Authorization', '{M}'), ('Accept', 'json')]",
        ),
        ("[(b'cookie', b'sid=abc')]", f"[(b'cookie', b'{M}')]"),
        ("token Bearer abc.def-ghi", f"token {M}"),
        ("author=ann pin=1234", f"author=ann pin={M}"),  # short keys match whole names only
        ("ValueError('token=abc123')", f"ValueError('token={M}')"),
    ],
)
def test_sensitive_key_values_in_text(text, expected):
    """Reprs, JSON, query strings, DSN keywords and header lines: the value after a sensitive
    name is masked, up to its closing quote or bracket."""
    assert Redactor().redact_text(text) == expected


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        (
            "postgresql://app:pa55word@db.internal:5432/shop",
            f"postgresql://app:{M}@db.internal:5432/shop",
        ),
        ("redis://:pw123@cache:6379/0", f"redis://:{M}@cache:6379/0"),
        ("amqp://app:p@ss@broker/vhost", f"amqp://app:{M}@broker/vhost"),  # an unescaped "@"
        ("mysql+pymysql://u:x@h/db?charset=utf8", f"mysql+pymysql://u:{M}@h/db?charset=utf8"),
        ("https://example.com:8080/path", "https://example.com:8080/path"),  # no password
    ],
)
def test_dsn_passwords(dsn, expected):
    assert Redactor().redact_text(dsn) == expected
    assert Redactor().redact({"url": dsn}) == {"url": expected}


# --- data ------------------------------------------------------------------------------------


def test_header_pairs_in_lists_tuples_and_dicts():
    """(name, value) pairs with a sensitive name are masked, in str or bytes (ASGI) form."""
    r = Redactor()
    headers = [
        ("Authorization", "Basic dXNlcjpwYXNz"),
        ["Cookie", "sid=abc"],
        ("Set-Cookie", "sid=abc; HttpOnly"),
        ("X-Api-Key", "k-991"),
        ("Accept", "application/json"),
    ]
    assert r.redact(headers) == [
        ("Authorization", M),
        ["Cookie", M],
        ("Set-Cookie", M),
        ("X-Api-Key", M),
        ("Accept", "application/json"),
    ]
    asgi = [(b"authorization", b"Bearer abc"), (b"host", b"shop")]
    assert r.redact(asgi) == [(b"authorization", M), (b"host", b"shop")]
    assert r.redact({"Set-Cookie": "sid=abc", "Accept": "*/*"}) == {
        "Set-Cookie": M,
        "Accept": "*/*",
    }
    assert r.redact(("the token expired", 3)) == ("the token expired", 3)  # a sentence, not a name


def test_namedtuples_namespaces_and_dataclasses_are_walked_by_field_name():
    r = Redactor()
    assert r.redact(Creds("app", "hunter2")) == {"user": "app", "password": M}
    assert r.redact(types.SimpleNamespace(user="app", api_key="k-1")) == {
        "user": "app",
        "api_key": M,
    }
    assert r.redact(Login("app", "s3")) == {"user": "app", "client_secret": M}
    nested = {"batch": [Creds("a", "x"), (Login("b", "y"),)]}
    assert r.redact(nested) == {
        "batch": [{"user": "a", "password": M}, ({"user": "b", "client_secret": M},)]
    }


def test_objects_are_shown_by_their_redacted_repr():
    r = Redactor()

    class Broken:
        def __repr__(self):
            raise RuntimeError("no repr")

    assert r.redact(Client("abc123")) == f"Client(token='{M}', region='eu')"
    assert r.redact(Broken()) == "<Broken object: repr() failed>"


def test_card_numbers_as_ints_and_bytes():
    r = Redactor()
    assert r.redact({"n": 4111111111111111, "qty": 3, "big": 4111111111111112}) == {
        "n": M,
        "qty": 3,
        "big": 4111111111111112,
    }
    assert r.redact(b"paid 4111 1111 1111 1111") == f"paid {M}".encode()
    assert r.redact(b"\xff plain") == b"\xff plain"  # unchanged bytes stay the same bytes


def test_redaction_never_modifies_its_input():
    data = {
        "h": [("Authorization", "Basic x")],
        "c": Creds("a", "b"),
        "ns": types.SimpleNamespace(token="t"),
    }
    before = repr(data)
    Redactor().redact(data)
    assert repr(data) == before


def test_partial_mask_never_reveals_most_of_a_short_secret():
    """partial() shows the last four characters only when they are at most a quarter."""
    r = Redactor()
    assert r.partial("4111111111111111") == "************1111"
    for short in ("1234", "12345", "hunter2", "abcdefghijk"):
        assert r.partial(short) == M
    assert r.partial("4111111111111111", keep=0) == M
    for length in range(1, 64):
        shown = r.partial("x" * length).count("x")
        assert shown * 4 <= length
    with pytest.raises(ConfigurationError, match="keep"):
        r.partial("x", keep=-1)


def test_mask_must_be_a_non_empty_string():
    with pytest.raises(ConfigurationError, match="mask"):
        Redactor(mask="")


# --- exceptions ------------------------------------------------------------------------------


def test_exception_message_masks_patterns_keys_and_quoted_argument_values():
    """What the audit record should store: str(exception), redacted, with the call's sensitive
    argument values masked where the message quotes them."""
    r = Redactor()
    exc = PermissionError("token plain-tok-77 rejected for card 4111111111111111")
    assert r.exception_message(exc, {"user": "ann", "token": "plain-tok-77"}) == (
        f"token {M} rejected for card {M}"
    )
    assert r.exception_message(KeyError({"password": "hunter2"})) == f"{{'password': '{M}'}}"
    assert r.exception_repr(ValueError("Bearer abc.def")) == f"ValueError('{M}')"

    class Broken(Exception):
        def __str__(self):
            raise RuntimeError

    assert r.exception_message(Broken()) == "<Broken object: str() failed>"


def _raise_chain() -> BaseException:
    # The secrets are assembled at run time: a traceback shows source lines as written, so a
    # literal secret in the raising line would be shown by any traceback (a documented limit).
    pw, tok, card = "hun" + "ter2", "tok" + ".en", " ".join(["4111", "1111", "1111", "1111"])
    try:
        try:
            raise KeyError({"password": pw})
        except KeyError as inner:
            raise ConnectionError("postgresql://app:" + pw[:4] + "55@db failed") from inner
    except ConnectionError:
        try:
            raise ValueError(f"card {card}, Bearer {tok}")
        except ValueError as exc:
            if sys.version_info >= (3, 11):
                exc.add_note("note: api_key=" + "k-" + "991")
            return exc
    raise AssertionError("unreachable")


def test_exc_info_stand_in_formats_without_secrets_and_leaves_the_exception_alone():
    """Formatting the stand-in (with a real logging formatter) shows the same traceback with
    masked text, causes and notes included; the user's exception is untouched."""
    exc = _raise_chain()
    before = (
        exc.args,
        str(exc),
        exc.__context__,
        exc.__traceback__,
        getattr(exc, "__notes__", None),
    )
    log, handler = capture("test.redaction.stand_in")
    ei = Redactor().exc_info(exc)
    log.error("failed", exc_info=ei)
    text = handler.everything()
    for secret in ("hunter2", "hunt55", "4111 1111", "tok.en", "k-991"):
        assert secret not in text
    assert "ValueError: card [REDACTED], [REDACTED]" in text
    assert "ConnectionError: postgresql://app:[REDACTED]@db failed" in text
    assert "KeyError: {'password': '[REDACTED]'}" in text
    assert "The above exception was the direct cause" in text
    assert "During handling of the above exception" in text
    assert f"line {exc.__traceback__.tb_lineno}" in text  # the real traceback, frames and all
    assert ei[0] is ValueError and isinstance(ei[1], RedactedError)
    assert type(ei[1]).__name__ == "ValueError" and ei[1].original_type == "builtins.ValueError"
    after = (
        exc.args,
        str(exc),
        exc.__context__,
        exc.__traceback__,
        getattr(exc, "__notes__", None),
    )
    assert after == before


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception groups are Python 3.11+")
def test_exception_groups_keep_their_members_in_the_stand_in():
    group = ExceptionGroup("batch password=pw1", [ValueError("Bearer abc"), TypeError("plain")])  # noqa: F821
    log, handler = capture("test.redaction.group")
    log.error("failed", exc_info=Redactor().exc_info(group))
    text = handler.everything()
    assert "pw1" not in text and "Bearer abc" not in text
    assert f"ExceptionGroup: batch password={M} (2 sub-exceptions)" in text
    assert f"ValueError: {M}" in text and "TypeError: plain" in text


# --- the property: a secret put anywhere never comes out -----------------------------------

SECRET = st.text("abcdefghjkmnpqrstuvwxyz23456789", min_size=8, max_size=20).map(lambda s: "Zq" + s)
SENSITIVE_NAMES = st.sampled_from(
    [
        "password",
        "db_password",
        "Password",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "api_key",
        "apiKey",
        "X-Api-Key",
        "Authorization",
        "Cookie",
        "Set-Cookie",
        "session_id",
        "private_key",
        "credentials",
    ]
)
HEADERS = st.sampled_from(
    ["Authorization", "Cookie", "Set-Cookie", "X-Api-Key", "Proxy-Authorization"]
)
FILLER = st.sampled_from(["order", "total", "shipped", "alpha", "note", ""])


@st.composite
def carriers(draw: Any) -> Callable[[str], Any]:
    """One way of carrying a secret: returns f(secret) -> object."""
    name = draw(SENSITIVE_NAMES)
    header = draw(HEADERS)
    kind = draw(st.integers(0, 13))
    options: List[Callable[[str], Any]] = [
        lambda s: {name: s},
        lambda s: {name: {"nested": [s]}},
        lambda s: [(header, s)],
        lambda s: [[header, f"x={s}"]],
        lambda s: ((header.lower().encode(), s.encode()),),
        lambda s: f"Authorization: Bearer {s}",
        lambda s: f"see postgresql://app:{s}@db:5432/shop now",
        lambda s: Creds("app", s),
        lambda s: types.SimpleNamespace(user="app", token=s),
        lambda s: Login("app", s),
        lambda s: Client(s),
        lambda s: f"login failed: {name}={s}",
        lambda s: f"?page=1&access_token={s}&x=2",
        lambda s: {"Set-Cookie": f"session={s}; HttpOnly"},
    ]
    return options[kind]


@st.composite
def wrapped(draw: Any, obj: Any) -> Any:
    """``obj`` inside a few layers of ordinary, non-sensitive structure."""
    Envelope = collections.namedtuple("Envelope", "meta body")
    for _ in range(draw(st.integers(0, 4))):
        filler = draw(FILLER)
        layer = draw(st.integers(0, 6))
        if layer == 0:
            obj = [filler, obj]
        elif layer == 1:
            obj = (obj, filler)
        elif layer == 2:
            obj = {"data": obj, "meta": filler}
        elif layer == 3:
            obj = Envelope(filler, obj)
        elif layer == 4:
            obj = types.SimpleNamespace(payload=obj)
        elif layer == 5:
            obj = {"items": [obj]}
        else:
            obj = f"{filler} {obj!r}"
    return obj


def outputs(redactor: Redactor, obj: Any) -> List[str]:
    """Every form in which CallPyBack writes a value out."""
    redacted = redactor.redact(obj)
    exc = ValueError(obj)
    log, handler = capture("test.redaction.property")
    try:
        raise exc
    except ValueError:
        log.error("failed: %s", redactor.exception_message(exc), exc_info=redactor.exc_info(exc))
    return [
        json.dumps(redacted, default=repr),
        repr(redacted),
        redactor.redact_text(repr(obj)),
        redactor.redact_text(str(obj)),
        repr(redactor.redact_mapping({"data": obj, "when": "now"})),
        redactor.exception_message(exc),
        redactor.exception_repr(exc),
        handler.everything(),
    ]


@settings(max_examples=400, deadline=None)
@given(secret=SECRET, carrier=carriers(), data=st.data())
def test_a_secret_embedded_anywhere_never_appears_in_any_output(secret, carrier, data):
    obj = data.draw(wrapped(carrier(secret)))
    for out in outputs(Redactor(), obj):
        assert secret not in out, out


@st.composite
def card_numbers(draw: Any) -> str:
    body = [draw(st.integers(0, 9)) for _ in range(15)]
    body[0] = draw(st.sampled_from([3, 4, 5, 6]))
    total = 0
    for i, d in enumerate(reversed(body)):
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    digits = "".join(map(str, body)) + str((10 - total % 10) % 10)
    sep = draw(st.sampled_from(["", " ", "-"]))
    return sep.join(digits[i : i + 4] for i in range(0, 16, 4))


@settings(max_examples=300, deadline=None)
@given(pan=card_numbers(), data=st.data())
def test_a_card_number_embedded_anywhere_never_appears_in_any_output(pan, data):
    form = data.draw(st.sampled_from(["text", "value", "int", "pair"]))
    carrier: Any = {
        "text": f"paid with {pan} today",
        "value": {"note": pan},
        "int": {"n": int(pan.replace(" ", "").replace("-", ""))},
        "pair": [("card", pan)],
    }[form]
    obj = data.draw(wrapped(carrier))
    digits = pan.replace(" ", "").replace("-", "")
    for out in outputs(Redactor(), obj):
        assert pan not in out and digits not in out, out


# --- through the observers and handlers that promise redaction -------------------------------


@settings(max_examples=100, deadline=None)
@given(secret=SECRET, carrier=carriers(), data=st.data())
def test_logged_failures_never_carry_the_secret(secret, carrier, data):
    """LoggingObserver and LoggingErrorHandler (exc_info on): the formatted records and every
    record attribute are free of the secret; the caller gets its own exception, unchanged."""
    obj = data.draw(wrapped(carrier(secret)))
    log, handler = capture("test.redaction.logged")
    raised = []

    @cpb.CallPyBack(
        observers=[LoggingObserver(log, include_arguments=True)],
        error_handlers=[LoggingErrorHandler(log)],
    )
    def work(payload, token):
        exc = RuntimeError(payload, f"with {token}")
        raised.append(exc)
        raise exc

    with pytest.raises(RuntimeError) as info:
        work(obj, token=secret)
    assert info.value is raised[0] and info.value.args == (obj, f"with {secret}")
    assert len(handler.records) == 2
    assert secret not in handler.everything()


def test_subclasses_with_their_own_scrub_keep_working():
    """A subclass may define methods of its own (the finance plugin's ``scrub(text,
    arguments)``): the exception methods never call an overridable name with another shape."""

    class Finance(Redactor):
        def scrub(self, text, arguments):
            return "overridden"

        def mask_values(self, text, secrets=()):
            return "overridden too"

    r = Finance()
    assert r.exception_message(ValueError("pin=1234"), {"pin": "1234"}) == f"pin={M}"
    assert str(r.redact_exception(ValueError("token abc123"), {"token": "abc123"})) == f"token {M}"

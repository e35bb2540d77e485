"""Fallback, exception mapping, logging, conditional and re-raise handlers; presets; the builder."""

from __future__ import annotations

import logging
import pickle
import random
import socket

import pytest

import callpyback as cpb
from callpyback.handlers import (
    NETWORK_ERRORS,
    CircuitBreakerHandler,
    CircuitOpenError,
    ConditionalErrorHandler,
    ErrorHandlerBuilder,
    ExceptionMappingHandler,
    FallbackHandler,
    LoggingErrorHandler,
    Recover,
    ReraiseHandler,
    RetryHandler,
    TimeoutHandler,
    network_chain,
    preset,
    resilient_chain,
)


def raising(exc):
    def f(*args, **kwargs):
        raise exc

    return f


def wrap(func, handlers, clock=None):
    return cpb.CallPyBack(error_handlers=handlers, time_source=clock)(func)


# --- FallbackHandler -----------------------------------------------------------------------------


def test_fallback_value_and_factory():
    assert wrap(raising(OSError()), [FallbackHandler(None)])() is None
    f = wrap(
        raising(OSError("x")),
        [FallbackHandler(factory=lambda ctx: (ctx.args, repr(ctx.exception)))],
    )
    assert f(1, 2) == ((1, 2), "OSError('x')")


def test_fallback_filters():
    handler = FallbackHandler(0, exceptions=(LookupError,), exclude=(KeyError,))
    assert wrap(raising(IndexError()), [handler])() == 0
    with pytest.raises(KeyError):
        wrap(raising(KeyError()), [handler])()
    with pytest.raises(OSError):
        wrap(raising(OSError()), [handler])()


@pytest.mark.parametrize(
    ("args", "kwargs", "fragment"),
    [
        ((), {}, "exactly one of"),
        ((1,), {"factory": lambda c: 2}, "exactly one of"),
        ((), {"factory": "nope"}, "must be callable"),
        ((1,), {"exceptions": ["x"]}, "'x' is not an exception class"),
    ],
)
def test_fallback_bad_options(args, kwargs, fragment):
    with pytest.raises(cpb.ConfigurationError, match=fragment):
        FallbackHandler(*args, **kwargs)


def test_fallback_pickles():
    copy = pickle.loads(pickle.dumps(FallbackHandler([1, 2], exceptions=(OSError,), name="fb")))
    assert (copy.value, copy.exceptions, copy.name) == ([1, 2], (OSError,), "fb")
    assert "value=[1, 2]" in repr(copy)


# --- ExceptionMappingHandler --------------------------------------------------------------------


class NotFound(Exception):
    pass


def test_mapping_to_exception_class_value_and_factory():
    handler = ExceptionMappingHandler(
        {
            KeyError: NotFound,
            ZeroDivisionError: 0,
            ValueError: lambda exc: RuntimeError(f"wrapped {exc}"),
            OSError: lambda exc: Recover("from factory"),
            ArithmeticError: lambda exc: "computed value",
        }
    )
    original = KeyError("user 7")
    with pytest.raises(NotFound, match="user 7") as info:
        wrap(raising(original), [handler])()
    assert info.value.__cause__ is original
    assert wrap(raising(ZeroDivisionError()), [handler])() == 0
    with pytest.raises(RuntimeError, match="wrapped bad"):
        wrap(raising(ValueError("bad")), [handler])()
    assert wrap(raising(OSError()), [handler])() == "from factory"
    assert wrap(raising(OverflowError()), [handler])() == "computed value"
    with pytest.raises(TypeError):
        wrap(raising(TypeError()), [handler])()


def test_mapping_most_specific_type_wins():
    handler = ExceptionMappingHandler({LookupError: "lookup", KeyError: "key"})
    assert wrap(raising(KeyError()), [handler])() == "key"
    assert wrap(raising(IndexError()), [handler])() == "lookup"


@pytest.mark.parametrize(
    ("mapping", "fragment"),
    [
        ({}, "non-empty mapping"),
        ([(KeyError, 1)], "non-empty mapping"),
        ({"KeyError": 1}, "key 'KeyError' is not an exception class"),
        ({KeyError: NotFound("x")}, "exception instance"),
    ],
)
def test_mapping_bad_options(mapping, fragment):
    with pytest.raises(cpb.ConfigurationError, match=fragment):
        ExceptionMappingHandler(mapping)


def test_mapping_repr():
    assert "KeyError: NotFound" in repr(ExceptionMappingHandler({KeyError: NotFound}))


# --- LoggingErrorHandler ------------------------------------------------------------------------


def test_logging_handler_logs_each_attempt_and_passes(caplog, clock):
    f = wrap(
        raising(ConnectionError("down")),
        [LoggingErrorHandler("app.errors", level="WARNING"), RetryHandler(2)],
        clock,
    )
    with caplog.at_level(logging.WARNING, logger="app.errors"), pytest.raises(ConnectionError):
        f()
    records = [r for r in caplog.records if r.name == "app.errors"]
    assert [r.callpyback_attempt for r in records] == [1, 2]
    assert records[0].levelno == logging.WARNING
    assert "failed on attempt 1: ConnectionError('down')" in records[0].getMessage()
    assert records[0].callpyback_target.endswith("raising.<locals>.f")
    assert records[0].exc_info is not None


def test_logging_handler_filters_and_level_checks(caplog):
    logger = logging.getLogger("app.quiet")
    handler = LoggingErrorHandler(
        logger, level=logging.ERROR, exceptions=(KeyError,), exc_info=False
    )
    with caplog.at_level(logging.ERROR, logger="app.quiet"):
        with pytest.raises(OSError):
            wrap(raising(OSError()), [handler])()
        with pytest.raises(KeyError):
            wrap(raising(KeyError("k")), [handler])()
    records = [r for r in caplog.records if r.name == "app.quiet"]
    assert len(records) == 1 and records[0].exc_info is None
    assert "level='ERROR'" in repr(handler)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"level": "LOUD"}, "logging level"),
        ({"level": True}, "logging level"),
        ({"logger": 5}, "logger name"),
    ],
)
def test_logging_bad_options(kwargs, fragment):
    with pytest.raises(cpb.ConfigurationError, match=fragment):
        LoggingErrorHandler(**kwargs)


# --- ConditionalErrorHandler and ReraiseHandler ---------------------------------------------------


def test_conditional_by_type_predicate_and_context():
    by_type = ConditionalErrorHandler(KeyError, FallbackHandler("key"))
    by_pred = ConditionalErrorHandler(lambda exc: "retryable" in str(exc), FallbackHandler("pred"))
    by_ctx = ConditionalErrorHandler(lambda exc, ctx: ctx.args == (1,), FallbackHandler("ctx"))
    assert wrap(raising(KeyError()), [by_type])() == "key"
    assert wrap(raising(OSError("retryable")), [by_type, by_pred])() == "pred"
    assert wrap(raising(OSError()), [by_ctx])(1) == "ctx"
    with pytest.raises(OSError):
        wrap(raising(OSError()), [by_ctx])(2)


def test_conditional_forwards_the_inner_hooks(clock):
    """A breaker inside a condition still admits calls and counts only matching failures."""
    breaker = CircuitBreakerHandler("cond-breaker", failure_threshold=1)
    handler = ConditionalErrorHandler(ConnectionError, breaker)
    assert handler.before_attempt == breaker.before_attempt
    with pytest.raises(ValueError):
        wrap(raising(ValueError()), [handler], clock)()
    assert breaker.stats.failures == 0
    with pytest.raises(ConnectionError):
        wrap(raising(ConnectionError()), [handler], clock)()
    with pytest.raises(CircuitOpenError):
        wrap(lambda: "never runs", [handler], clock)()


def test_conditional_bad_options():
    with pytest.raises(cpb.ConfigurationError, match="not an exception class"):
        ConditionalErrorHandler(int, FallbackHandler(1))
    with pytest.raises(cpb.ConfigurationError, match="must be callable"):
        ConditionalErrorHandler("KeyError", FallbackHandler(1))
    with pytest.raises(cpb.ConfigurationError, match=r"accept \(exception\)"):
        ConditionalErrorHandler(lambda a, b, c: True, FallbackHandler(1))
    with pytest.raises(cpb.ConfigurationError, match="must have a handle"):
        ConditionalErrorHandler(KeyError, object())


def test_reraise_stops_the_chain(clock):
    original = ValueError("bad input")
    calls = []

    def f():
        calls.append(1)
        raise original

    g = wrap(f, [ReraiseHandler(ValueError), RetryHandler(3), FallbackHandler(0)], clock)
    with pytest.raises(ValueError) as info:
        g()
    assert info.value is original and info.value.__cause__ is None
    assert calls == [1]


# --- presets --------------------------------------------------------------------------------------


def test_presets_classify_by_type_not_by_message(caplog):
    """KeyError("author") is not a security failure, whatever its message says."""
    handlers = [*preset("security"), FallbackHandler("masked")]
    with caplog.at_level(logging.WARNING, logger="callpyback.security"):
        assert wrap(raising(KeyError("author")), handlers)() == "masked"
        assert wrap(raising(ValueError("unauthorized auth token")), handlers)() == "masked"
        with pytest.raises(PermissionError):
            wrap(raising(PermissionError("denied")), handlers)()
    security_records = [r for r in caplog.records if r.name == "callpyback.security"]
    assert len(security_records) == 1


def test_validation_preset_is_never_retried_or_masked(clock, caplog):
    calls = []

    def f():
        calls.append(1)
        raise TypeError("wrong type")

    handlers = [*preset("validation"), RetryHandler(3), FallbackHandler(0)]
    with caplog.at_level(logging.WARNING, logger="callpyback.validation"), pytest.raises(TypeError):
        wrap(f, handlers, clock)()
    assert calls == [1]
    assert any(r.name == "callpyback.validation" for r in caplog.records)


def test_network_preset_retries_network_errors_only(clock):
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise socket.timeout("read timed out")
        return "ok"

    handlers = preset("network", attempts=3, rng=random.Random(0))
    assert wrap(flaky, handlers, clock)() == "ok"
    assert len(clock.sleeps) == 2
    assert socket.gaierror in NETWORK_ERRORS

    with pytest.raises(ValueError):
        wrap(raising(ValueError()), handlers, clock)()
    assert len(clock.sleeps) == 2


def test_business_logic_preset_needs_your_exception_types():
    class InsufficientFunds(Exception):
        pass

    with pytest.raises(cpb.ConfigurationError, match="needs exceptions="):
        preset("business-logic")
    handlers = [*preset("business_logic", exceptions=(InsufficientFunds,)), FallbackHandler(0)]
    with pytest.raises(InsufficientFunds):
        wrap(raising(InsufficientFunds()), handlers)()
    assert wrap(raising(OSError()), handlers)() == 0


@pytest.mark.parametrize(
    ("name", "options", "fragment"),
    [
        ("netwrok", {}, "unknown error-handler preset 'netwrok'. Did you mean 'network'"),
        ("auth", {}, "Presets: validation, network, business-logic, security"),
        ("network", {"attempts": 0}, "must be >= 1"),
        ("network", {"colour": "red"}, "preset 'network'.*colour"),
        ("validation", {"extra": ["x"]}, "'x' is not an exception class"),
    ],
)
def test_preset_bad_input(name, options, fragment):
    with pytest.raises(cpb.ConfigurationError, match=fragment):
        preset(name, **options)


def test_ready_made_chains(clock):
    chain = resilient_chain("ready-1", attempts=2, timeout=5, fallback="fb", rng=random.Random(1))
    assert [type(h).__name__ for h in chain] == [
        "TimeoutHandler",
        "RetryHandler",
        "CircuitBreakerHandler",
        "FallbackHandler",
    ]
    assert wrap(raising(OSError()), chain, clock)() == "fb"
    net = network_chain("ready-2", fallback=None, rng=random.Random(1))
    assert wrap(raising(ConnectionError()), net, clock)() is None
    with pytest.raises(ValueError):
        wrap(raising(ValueError()), net, clock)()


# --- the builder ---------------------------------------------------------------------------------


def test_builder_builds_a_working_chain_in_order(clock):
    handlers = (
        ErrorHandlerBuilder()
        .log("app.errors")
        .preset("validation")
        .retry(3, jitter=None, exceptions=(OSError,))
        .circuit_breaker("builder-1", failure_threshold=10)
        .timeout(10)
        .map_exceptions({KeyError: LookupError})
        .when(OSError, FallbackHandler("os fallback"))
        .reraise(RuntimeError)
        .fallback(factory=lambda ctx: "last resort")
        .build()
    )
    assert [type(h).__name__ for h in handlers] == [
        "LoggingErrorHandler",
        "LoggingErrorHandler",
        "ReraiseHandler",
        "RetryHandler",
        "CircuitBreakerHandler",
        "TimeoutHandler",
        "ExceptionMappingHandler",
        "ConditionalErrorHandler",
        "ReraiseHandler",
        "FallbackHandler",
    ]
    calls = []

    def flaky():
        calls.append(1)
        raise OSError("down")

    assert wrap(flaky, handlers, clock)() == "os fallback"
    assert len(calls) == 3 and clock.sleeps == [0.1, 0.2]
    with pytest.raises(LookupError):
        wrap(raising(KeyError()), handlers, clock)()
    assert wrap(raising(ArithmeticError()), handlers, clock)() == "last resort"


def test_builder_rejects_steps_after_the_fallback():
    builder = ErrorHandlerBuilder().retry(2).fallback(0)
    with pytest.raises(cpb.ConfigurationError, match=r"after 'fallback'.*add the fallback last"):
        builder.retry(3)


def test_builder_rejects_a_duplicate_retry_and_an_empty_chain():
    with pytest.raises(cpb.ConfigurationError, match="already in the chain"):
        ErrorHandlerBuilder().retry(2).retry(3)
    with pytest.raises(cpb.ConfigurationError, match="chain is empty"):
        ErrorHandlerBuilder().build()


def test_builder_validates_each_step_at_once():
    with pytest.raises(cpb.ConfigurationError, match="explicit stop"):
        ErrorHandlerBuilder().retry()
    with pytest.raises(cpb.ConfigurationError, match="failure_threshold"):
        ErrorHandlerBuilder().circuit_breaker("b", failure_threshold=0)
    with pytest.raises(cpb.ConfigurationError, match="unknown error-handler preset"):
        ErrorHandlerBuilder().preset("nope")
    with pytest.raises(cpb.ConfigurationError, match="seconds"):
        ErrorHandlerBuilder().timeout(-1)


def test_builder_add_accepts_callables_and_repr():
    builder = ErrorHandlerBuilder().add(lambda e, c: None).retry(2)
    assert "retry" in repr(builder)
    assert len(builder.build()) == 2
    assert isinstance(builder.build()[1], RetryHandler)
    assert isinstance(TimeoutHandler(1), cpb.ErrorHandler)


# --- redaction in the handlers that log -----------------------------------------------------------


class Formatting(logging.Handler):
    """A real handler whose output is what its formatter makes of each record."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.records = []
        self.lines = []

    def emit(self, record):
        self.records.append(record)
        self.lines.append(self.format(record))


def _secret_failure(kind):
    # Assembled at run time: a traceback shows source lines as written.
    card = " ".join(["4111", "1111", "1111", "1111"])
    token = "Bearer " + "abc.def" + "-ghi"
    raised = []

    def f(user, password):
        exc = kind(f"denied {user} with card {card} and {token}; password {password}")
        raised.append(exc)
        raise exc

    return f, raised, (card, token, "abc.def", "hunter" + "22")


def test_logging_handler_masks_exception_text_and_traceback():
    """LoggingErrorHandler logged the exception's repr and traceback with card numbers and
    bearer tokens in clear; now both are redacted, and the caller still gets its exception."""
    handler = Formatting()
    log = logging.getLogger("app.redacted")
    log.addHandler(handler)
    try:
        f, raised, secrets = _secret_failure(ConnectionError)
        with pytest.raises(ConnectionError) as info:
            wrap(f, [LoggingErrorHandler(log)])("ann", "hunter" + "22")
    finally:
        log.removeHandler(handler)
    (rec,) = handler.records
    for out in (handler.lines[0], repr(vars(rec)), rec.getMessage()):
        for secret in secrets:
            assert secret not in out, out
    assert (
        "ConnectionError: denied ann with card [REDACTED] and [REDACTED]; password [REDACTED]"
        in (handler.lines[0])
    )
    assert info.value is raised[0] and "hunter22" in str(info.value)


def test_security_preset_masks_what_it_logs(caplog):
    """preset("security") logs with exc_info: caplog's text and a real handler's output carry
    no secret."""
    handler = Formatting()
    log = logging.getLogger("callpyback.security")
    log.addHandler(handler)
    try:
        f, raised, secrets = _secret_failure(PermissionError)
        with caplog.at_level(logging.WARNING, logger="callpyback.security"):
            with pytest.raises(PermissionError) as info:
                wrap(f, preset("security"))("ann", "hunter" + "22")
    finally:
        log.removeHandler(handler)
    assert "Traceback (most recent call last)" in caplog.text
    for out in (caplog.text, *handler.lines, *(repr(vars(r)) for r in caplog.records)):
        for secret in secrets:
            assert secret not in out, out
    assert info.value is raised[0]


def test_logging_handler_takes_a_redactor():
    custom = cpb.Redactor(keys=["account"])
    assert LoggingErrorHandler(redactor=custom).redactor is custom
    with pytest.raises(cpb.ConfigurationError, match="redactor"):
        LoggingErrorHandler(redactor="mask")

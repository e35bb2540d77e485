"""LoggingObserver: structured records per outcome, redaction, and silence when disabled."""

from __future__ import annotations

import logging

import pytest

import callpyback as cpb
from callpyback import ConfigurationError, LoggingObserver, Redactor


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def logger(request):
    log = logging.getLogger(f"test.logging.{request.node.name}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    handler = ListHandler()
    log.addHandler(handler)
    log.records = handler.records  # type: ignore[attr-defined]
    yield log
    log.removeHandler(handler)


def test_success_and_failure_records_carry_structured_fields(logger, clock):
    """Each outcome is logged at its level with function, state, duration and exception."""
    obs = LoggingObserver(logger)

    @cpb.CallPyBack(observers=[obs], time_source=clock)
    def pay(amount):
        clock.advance(0.25)
        if amount < 0:
            raise ValueError("negative amount")
        return amount

    pay(10)
    with pytest.raises(ValueError):
        pay(-1)
    ok, bad = logger.records
    target = f"{__name__}:{pay.__qualname__}"
    assert ok.levelno == logging.INFO and ok.function == target and ok.outcome == "success"
    assert ok.state == "COMPLETED" and ok.duration == 0.25 and ok.exception is None
    assert ok.getMessage() == f"{target} succeeded in 0.250000 s"
    assert bad.levelno == logging.ERROR and bad.outcome == "failure"
    assert bad.exception == "ValueError('negative amount')"
    assert bad.exc_info[0] is ValueError
    assert "negative amount" in bad.getMessage()


def test_levels_per_outcome_and_call_logging(logger):
    """Levels are configurable per outcome (names or numbers); None turns one off."""
    obs = LoggingObserver(logger, call_level="DEBUG", success_level=None, recovered_level="warning")

    @cpb.CallPyBack(observers=[obs], default_return=0)
    def f(fail):
        if fail:
            raise KeyError("k")
        return 1

    f(False)
    f(True)
    got = [(r.outcome, r.levelno) for r in logger.records]
    assert got == [("call", logging.DEBUG), ("call", logging.DEBUG), ("recovered", logging.WARNING)]


def test_arguments_and_results_only_when_asked_and_redacted(logger):
    """include_arguments / include_result add redacted copies; the caller's data is untouched."""
    obs = LoggingObserver(logger, include_arguments=True, include_result=True)
    payload = {"user": "ann", "password": "hunter2", "card": "4111 1111 1111 1111"}

    @cpb.CallPyBack(observers=[obs])
    def login(data, api_key="sk-123"):
        return {"token": "abc", "ok": True}

    login(payload)
    rec = logger.records[0]
    assert rec.arguments == {
        "data": {"user": "ann", "password": "[REDACTED]", "card": "[REDACTED]"},
        "api_key": "[REDACTED]",
    }
    assert rec.result == {"token": "[REDACTED]", "ok": True}
    assert payload["password"] == "hunter2"  # never mutated

    plain = LoggingObserver(logger)
    cpb.CallPyBack(observers=[plain])(lambda: 1)()
    assert not hasattr(logger.records[-1], "arguments")


def test_disabled_logger_emits_nothing_and_reads_nothing(logger):
    """When the level is disabled, no record is made and arguments are never bound."""
    logger.setLevel(logging.CRITICAL)
    obs = LoggingObserver(logger, include_arguments=True)

    class Exploding:
        def __repr__(self):
            raise AssertionError("arguments were inspected")

    @cpb.CallPyBack(observers=[obs])
    def f(x):
        return x

    f(Exploding())
    assert logger.records == []
    logger.setLevel(logging.DEBUG)  # logging's own cache is invalidated: records come back
    f(1)
    assert len(logger.records) == 1
    logging.disable(logging.CRITICAL)  # the global switch is honoured at once...
    try:
        f(2)
    finally:
        logging.disable(logging.NOTSET)
    logger.disabled = True  # ...and so is a disabled logger (as fileConfig leaves them)
    try:
        f(3)
    finally:
        logger.disabled = False
    assert len(logger.records) == 1
    f(4)
    assert len(logger.records) == 2


def test_interrupted_and_logger_by_name():
    """A logger may be given by name; KeyboardInterrupt is logged as interrupted."""
    handler = ListHandler()
    log = logging.getLogger("test.logging.byname")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:

        @cpb.CallPyBack(observers=[LoggingObserver("test.logging.byname")])
        def stop():
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            stop()
    finally:
        log.removeHandler(handler)
    (rec,) = handler.records
    assert rec.outcome == "interrupted" and rec.state == "ERROR"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"success_level": "LOUD"}, "success_level"),
        ({"failure_level": True}, "failure_level"),
        ({"logger": 42}, "logger"),
        ({"redactor": "no"}, "redactor"),
    ],
)
def test_bad_options(kwargs, match):
    """Bad levels, loggers and redactors are rejected with the option's name."""
    with pytest.raises(ConfigurationError, match=match):
        LoggingObserver(**kwargs)


def test_custom_redactor(logger):
    """A custom Redactor decides what is masked."""
    obs = LoggingObserver(
        logger,
        include_arguments=True,
        redactor=Redactor(keys=["account"], extend=False, mask="***"),
    )

    @cpb.CallPyBack(observers=[obs])
    def f(account, password):
        return None

    f("ACC-1", "pw")
    assert logger.records[0].arguments == {"account": "***", "password": "pw"}


class Formatting(logging.Handler):
    """A real handler whose output is what its formatter makes of each record."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(message)s | %(exception)s"))
        self.records = []
        self.lines = []

    def emit(self, record):
        self.records.append(record)
        self.lines.append(self.format(record))


def test_exception_text_is_masked_in_every_part_of_the_record(logger, caplog):
    """The message was masked, but exc_info (the formatted traceback) and extra['exception']
    carried the card number and the bearer token in clear; the caller's exception is the
    original object, unchanged."""
    handler = Formatting()
    logger.addHandler(handler)
    logger.propagate = True  # caplog listens on the root logger
    card = "-".join(
        ["4111", "1111", "1111", "1111"]
    )  # assembled, so the traceback's source line cannot show it
    bearer = "Bearer " + "eyJ.abc" + ".xyz-1"
    raised = []

    @cpb.CallPyBack(observers=[LoggingObserver(logger)])
    def charge(amount, api_key):
        exc = ValueError(f"card {card} declined; sent {bearer}; key {api_key}")
        raised.append(exc)
        raise exc

    with caplog.at_level(logging.ERROR, logger=logger.name), pytest.raises(ValueError) as info:
        charge(10, api_key="sk-" + "live-777")
    try:
        (rec,) = handler.records
        outputs = [*handler.lines, caplog.text, repr(vars(rec)), str(rec.exc_info[1])]
        for out in outputs:
            for secret in (card, bearer, "eyJ.abc", "sk-live-777"):
                assert secret not in out, out
        assert "Traceback (most recent call last)" in handler.lines[0]
        assert (
            "ValueError: card [REDACTED] declined; sent [REDACTED]; key [REDACTED]"
            in (handler.lines[0])
        )
        assert (
            rec.exception
            == "ValueError('card [REDACTED] declined; sent [REDACTED]; key [REDACTED]')"
        )
        assert rec.exc_info[0] is ValueError
        assert info.value is raised[0]
        assert str(info.value) == f"card {card} declined; sent {bearer}; key sk-live-777"
    finally:
        logger.removeHandler(handler)


def test_the_gate_follows_level_changes_and_logger_disabled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The gate reads logging's own per-level cache; a level change clears it, setting
    # logger.disabled does not: neither may leave a record logged or one lost.
    logger = logging.getLogger("test.gate.flags")
    logger.setLevel(logging.INFO)
    wrapped = cpb.CallPyBack(observers=[LoggingObserver(logger)])(lambda: 1)
    with caplog.at_level(logging.INFO, logger="test.gate.flags"):
        wrapped()
        assert len(caplog.records) == 1  # the cache now says INFO is enabled
        logger.disabled = True
        try:
            wrapped()
            assert len(caplog.records) == 1
        finally:
            logger.disabled = False
        wrapped()
        assert len(caplog.records) == 2
        logger.setLevel(logging.WARNING)
        wrapped()
        assert len(caplog.records) == 2

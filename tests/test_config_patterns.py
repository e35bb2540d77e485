"""Patterns and the matcher: dot-boundary globs, qualnames, regexes, excludes, first match wins."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callpyback.cli._render import explain
from callpyback.config import Pattern, PatternError, load_text
from callpyback.config._patterns import Matcher
from tests.config_helpers import make_registry


def matches(pattern: str, target: str) -> bool:
    module, _, qualname = target.partition(":")
    return Pattern(pattern).matches(module, qualname)


@pytest.mark.parametrize(
    ("pattern", "target", "expected"),
    [
        ("shop", "shop:f", True),
        ("shop", "shop.x:f", True),
        ("shop", "shop.x.y:Cart.add", True),
        ("shop", "shopping:f", False),
        ("shop", "myshop:f", False),
        ("shop.payments", "shop:f", False),
        ("shop.payments.*", "shop.payments.card:f", True),
        ("shop.payments.*", "shop.payments.card.visa:f", True),
        ("shop.payments.*", "shop.payments:f", False),
        ("shop.*.api", "shop.a.api:f", True),
        ("shop.*.api", "shop.a.b.api:f", False),
        ("shop.**.api", "shop.a.b.api:f", True),
        ("shop.pay?", "shop.pay1:f", True),
        ("shop.pay?", "shop.pay:f", False),
        ("shop.[ab]x", "shop.bx:f", True),
        ("shop.[!ab]x", "shop.bx:f", False),
        ("shop.[!ab]x", "shop.cx:f", True),
        ("shop.billing:charge_*", "shop.billing:charge_card", True),
        ("shop.billing:charge_*", "shop.billing:refund", False),
        ("shop.billing:charge_*", "shop.billing.sub:charge_card", True),
        ("shop:Cart", "shop:Cart", True),
        ("shop:Cart", "shop:Cart.add", True),
        ("shop:Cart", "shop:Cartography", False),
        ("shop:Cart.add", "shop:Cart.add", True),
        ("shop:Cart.add", "shop:Cart.address", False),
        ("shop:Cart.*", "shop:Cart.add", True),
        ("shop:Cart.*", "shop:Cart", False),
        ("shop:*", "shop:Cart.add", True),
        ("*", "anything.at.all:f", True),
        (r"re:shop\.(payments|billing):.*", "shop.billing:charge", True),
        (r"re:shop\.(payments|billing):.*", "shop.cart:add", False),
        (r"re:shop\.(payments|billing):.*", "shop.billing.x:charge", False),
        (r"re:.*:test_\w+", "pkg.mod:test_one", True),
        (r"re:.*:test_\w+", "pkg.mod:helper", False),
        ("café.menu:prix_*", "café.menu.du_jour:prix_total", True),
        ("pkg:outer.<locals>.inner", "pkg:outer.<locals>.inner", True),
    ],
)
def test_pattern_semantics(pattern: str, target: str, expected: bool) -> None:
    """Dot-boundary aware globs for module and qualname; re: matches the whole target."""
    assert matches(pattern, target) is expected


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "non-empty"),
        ("re:", "followed by a regular expression"),
        ("re:(", "bad regular expression"),
        (":f", "no module part"),
        ("a:", "ends with ':'"),
        ("a:b:c", "more than one ':'"),
        ("a..b", "empty dotted segment"),
        (".a", "empty dotted segment"),
        ("a:B..c", "empty dotted segment"),
        ("a b", "may only hold"),
        ("a.[bc", "unclosed '['"),
    ],
)
def test_bad_patterns(pattern: str, message: str) -> None:
    """Every malformed pattern is rejected with a reason."""
    with pytest.raises(PatternError, match=re.escape(message)):
        Pattern(pattern)


def _config(text: str):  # type: ignore[no-untyped-def]
    return load_text(text, registry=make_registry(), env={})


def test_first_match_in_file_order_wins() -> None:
    """Of several matching pipelines the first in the file applies; explain says so."""
    config = _config(
        '[[pipelines]]\nname = "pay"\nmatch = ["shop.payments"]\nobservers = ["metrics"]\n'
        '[[pipelines]]\nname = "all"\nmatch = ["shop"]\nobservers = ["metrics"]\n'
    )
    found = config.pipeline_for("shop.payments.card:charge")
    assert found is not None
    assert (found.pipeline.name, found.index, found.pattern) == ("pay", 0, "shop.payments")
    assert "first matching pipeline" in found.reason
    assert config.pipeline_for("shop.cart:add").pipeline.name == "all"
    text = explain(config, "shop.payments:charge")
    assert "pipeline: pay" in text
    assert "shadowed: all also matches 'shop'" in text


def test_excluded_targets_fall_through_to_later_pipelines() -> None:
    """An exclude removes a target from its pipeline only; later pipelines may take it."""
    config = _config(
        '[[pipelines]]\nname = "pay"\nmatch = ["shop.payments"]\n'
        'exclude = ["shop.payments.tests", "re:.*:_.*"]\nobservers = ["metrics"]\n'
        '[[pipelines]]\nname = "rest"\nmatch = ["shop.payments.tests"]\nobservers = ["metrics"]\n'
    )
    assert config.pipeline_for("shop.payments:charge").pipeline.name == "pay"
    assert config.pipeline_for("shop.payments:_private") is None
    assert config.pipeline_for("shop.payments.tests.t:x").pipeline.name == "rest"
    assert "skipped:  pay (matched 'shop.payments', excluded by 'shop.payments.tests')" in (
        explain(config, "shop.payments.tests.t:x")
    )


def test_may_match_module() -> None:
    """The precheck is False only for modules none of whose functions can match."""
    config = _config(
        '[[pipelines]]\nmatch = ["shop.payments", "bank.*.api:Client.*", '
        r'"re:crm\\.(leads|deals):.*"]'
        "\n"
    )
    assert config.may_match_module("shop.payments")
    assert config.may_match_module("shop.payments.card")
    assert not config.may_match_module("shop")
    assert not config.may_match_module("shopping")
    assert config.may_match_module("bank.eu.api")
    assert not config.may_match_module("bank.eu")
    assert config.may_match_module("crm.leads")
    assert not config.may_match_module("other")


def test_pipeline_for_module_without_qualname() -> None:
    """A bare module target matches module-only patterns."""
    config = _config('[[pipelines]]\nmatch = ["shop"]\n')
    assert config.pipeline_for("shop") is not None
    assert "no ':qualname' given" in explain(config, "shop")


# --- the indexed matcher agrees with a brute-force scan ------------------------------------
_segment = st.sampled_from(["a", "b", "ab", "shop", "x1"])
_module = st.lists(_segment, min_size=1, max_size=4).map(".".join)
_qual = st.lists(st.sampled_from(["C", "f", "g", "Cart", "add"]), min_size=1, max_size=3).map(
    ".".join
)
_glob_segment = st.sampled_from(["a", "b", "ab", "shop", "x1", "*", "a*", "?", "**", "[ab]"])
_module_glob = st.lists(_glob_segment, min_size=1, max_size=3).map(".".join)
_qual_glob = st.lists(st.sampled_from(["C", "f", "*", "Cart", "a*"]), min_size=1, max_size=2).map(
    ".".join
)
_pattern = st.one_of(
    _module_glob,
    st.tuples(_module_glob, _qual_glob).map(":".join),
    st.sampled_from(
        [r"re:a\..*", r"re:shop(\..*)?:.*", r"re:.*:f", r"re:(a|b):C.*", r"re:ab?\.x1:.*"]
    ),
)
_pipelines = st.lists(
    st.tuples(st.lists(_pattern, min_size=1, max_size=4), st.lists(_pattern, max_size=2)),
    min_size=1,
    max_size=8,
)


def _brute(pipelines, module: str, qualname: str):  # type: ignore[no-untyped-def]
    for index, (match, exclude) in enumerate(pipelines):
        hit = next((p for p in match if p.matches(module, qualname)), None)
        if hit is not None and not any(p.matches(module, qualname) for p in exclude):
            return index
    return None


@settings(max_examples=300, deadline=None)
@given(_pipelines, st.lists(st.tuples(_module, _qual), min_size=1, max_size=10))
def test_indexed_matcher_agrees_with_linear_scan(raw, targets) -> None:  # type: ignore[no-untyped-def]
    """The index never changes the answer, and may_match_module is never wrongly False."""
    pipelines = [(tuple(Pattern(p) for p in m), tuple(Pattern(p) for p in e)) for m, e in raw]
    matcher = Matcher(pipelines)
    for module, qualname in targets:
        found = matcher.match(module, qualname)
        expected = _brute(pipelines, module, qualname)
        assert (found[0] if found else None) == expected
        if found is not None:
            assert found[1].matches(module, qualname)
            assert matcher.may_match_module(module)

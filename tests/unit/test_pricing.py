"""Pricing in Decimal with explicit rounding: examples and properties."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.errors import ValidationFailed
from shared.domain.pricing import (
    apply_markups,
    breakdown,
    check_markup,
    implied_markup,
    margin_from_markup,
    markup_from_margin,
    minor_unit,
    round_money,
)

CURRENCIES = st.sampled_from(["CZK", "EUR", "JPY", "KWD"])
# Price-sheet costs: up to four decimals, as Partner Center sends them.
COSTS = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1000000"), places=4)
MARKUPS = st.decimals(min_value=Decimal("0"), max_value=Decimal("500"), places=4)
MARGINS = st.decimals(min_value=Decimal("-500"), max_value=Decimal("99.99"), places=4)


def test_rounding_is_half_up_to_the_minor_unit():
    assert round_money(Decimal("1.005"), "EUR") == Decimal("1.01")
    assert round_money(Decimal("1.0049"), "EUR") == Decimal("1.00")
    assert round_money(Decimal("2.5"), "JPY") == Decimal("3")
    assert round_money(Decimal("1.0005"), "KWD") == Decimal("1.001")
    assert minor_unit("CZK") == Decimal("0.01")


def test_default_margin_is_ten_percent_over_cost():
    b = breakdown(Decimal("100.00"), Decimal("125.00"), "CZK", Decimal("10"))
    assert (b.cost, b.customer_price, b.margin) == (
        Decimal("100.00"),
        Decimal("110.00"),
        Decimal("10.00"),
    )
    assert b.markup_percent == Decimal("10.00")
    assert b.margin_percent == Decimal("9.09")


def test_markups_multiply_and_round_once():
    # 99.99 × 1.1 × 1.05 = 115.488450 → 115.49 (rounding each step would give 115.50).
    assert apply_markups(Decimal("99.99"), "EUR", Decimal("10"), Decimal("5")) == Decimal("115.49")


def test_a_negative_markup_needs_below_cost_on_purpose():
    with pytest.raises(ValidationFailed) as err:
        check_markup(Decimal("-5"), below_cost=False, field="markupPercent")
    assert err.value.errors[0].field == "markupPercent"
    assert check_markup(Decimal("-5"), below_cost=True, field="m") == Decimal("-5")
    with pytest.raises(ValidationFailed):
        check_markup(Decimal("-100"), below_cost=True, field="m")


@given(cost=COSTS, markup=MARKUPS, currency=CURRENCIES)
def test_margin_is_never_negative_for_a_markup_of_zero_or_more(cost, markup, currency):
    b = breakdown(cost, cost, currency, markup)
    assert b.margin >= 0
    assert b.customer_price >= b.cost
    assert b.customer_price == round_money(b.customer_price, currency)


@given(
    cost=COSTS, markup=st.decimals(min_value=Decimal("-99"), max_value=Decimal("-0.01"), places=2)
)
def test_only_a_negative_markup_can_make_a_negative_margin(cost, markup):
    # The rule that allows it is refused unless below cost was asked for.
    with pytest.raises(ValidationFailed):
        check_markup(markup, below_cost=False, field="m")
    b = breakdown(cost, cost, "EUR", markup)
    assert b.customer_price <= b.cost


@given(markup=MARKUPS)
def test_markup_and_margin_convert_both_ways(markup):
    margin = margin_from_markup(markup)
    assert 0 <= margin < 100
    assert abs(markup_from_margin(margin) - markup) < Decimal("1e-20")


@given(margin=MARGINS)
def test_margin_and_markup_convert_both_ways(margin):
    markup = markup_from_margin(margin)
    assert abs(margin_from_markup(markup) - margin) < Decimal("1e-20")


@given(cost=COSTS, target_cents=st.integers(min_value=0, max_value=10**9), currency=CURRENCIES)
def test_a_target_price_stored_as_its_markup_comes_back_exactly(cost, target_cents, currency):
    target = round_money(Decimal(target_cents) * minor_unit(currency), currency)
    cost = round_money(cost, currency)
    if cost == 0:
        return
    markup = implied_markup(target, cost)
    assert apply_markups(cost, currency, markup) == target


@given(cost=COSTS, markup=MARKUPS)
def test_breakdown_percentages_agree_with_the_amounts(cost, markup):
    b = breakdown(cost, cost, "EUR", markup)
    if b.cost and b.customer_price:
        expected = (b.margin * 100 / b.cost).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        assert b.markup_percent == expected
        assert b.margin_percent is not None and b.margin_percent <= b.markup_percent

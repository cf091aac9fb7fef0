"""Money and `price_line`: Decimal only, the currency kept, half-up rounding exactly once."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.adapters.tables.codec import EntityCodec
from shared.domain.catalog import CatalogEntry
from shared.domain.errors import ValidationFailed
from shared.domain.identity import Appearance, Reseller, ResellerSettings
from shared.domain.money import NO_CURRENCY, CurrencyMismatch, Money, minor_unit, round_money
from shared.domain.pricing import (
    LineOverride,
    OfferOverrides,
    PricedLine,
    PriceSheetRow,
    PriceSource,
    ResellerPricing,
    check_markup,
    margin_from_markup,
    markup_from_margin,
    price_line,
)

CURRENCIES = st.sampled_from(["CZK", "EUR", "USD", "JPY", "KWD"])
# Price-sheet costs: up to four decimals, as Partner Center sends them.
COSTS = st.decimals(min_value=Decimal("0"), max_value=Decimal("1000000"), places=4)
MARKUPS = st.decimals(min_value=Decimal("0"), max_value=Decimal("500"), places=4)
MARGINS = st.decimals(min_value=Decimal("-500"), max_value=Decimal("99.99"), places=4)
QUANTITIES = st.integers(min_value=1, max_value=10_000)


def exact_half_up(amount: Decimal, currency: str) -> Decimal:
    """The reference rounding, written out independently of the code under test."""
    return amount.quantize(minor_unit(currency), rounding=ROUND_HALF_UP)


def row(
    cost: Decimal | str, currency: str = "CZK", erp: Decimal | str | None = None
) -> PriceSheetRow:
    return PriceSheetRow(
        product_id="CFQ7TTC0LFLX",
        sku_id="0001",
        segment="commercial",
        term="P1Y",
        billing_cycle="annual",
        currency=currency,
        microsoft_cost=Decimal(cost),
        erp=None if erp is None else Decimal(erp),
        effective_date=date(2026, 1, 1),
    )


def pricing(currency: str = "CZK", distributor: str = "0", default: str = "10") -> ResellerPricing:
    return ResellerPricing(
        currency=currency,
        distributor_markup_percent=Decimal(distributor),
        default_markup_percent=Decimal(default),
    )


def amounts(line: PricedLine) -> list[Money]:
    found: list[Money] = []
    for layers in (line.unit, line.extended):
        found += [m for m in dict(layers).values() if m is not None]
    return found


# --- Money --------------------------------------------------------------------------------------


def test_rounding_is_half_up_to_the_minor_unit():
    assert round_money(Decimal("1.005"), "EUR") == Decimal("1.01")
    assert round_money(Decimal("1.0049"), "EUR") == Decimal("1.00")
    assert round_money(Decimal("-1.005"), "EUR") == Decimal("-1.01")  # away from zero
    assert round_money(Decimal("2.5"), "JPY") == Decimal("3")
    assert round_money(Decimal("1.0005"), "KWD") == Decimal("1.001")
    assert minor_unit("CZK") == minor_unit("USD") == Decimal("0.01")


def test_money_is_a_decimal_string_with_its_currency_on_the_wire():
    money = Money.of("123.45", "CZK")
    assert money.model_dump(mode="json") == {"amount": "123.45", "currency": "CZK"}
    assert Money.model_validate_json('{"amount": "1E+2", "currency": "EUR"}').model_dump(
        mode="json"
    ) == {"amount": "100", "currency": "EUR"}
    with pytest.raises(ValueError):
        Money.model_validate({"amount": "1", "currency": "czk"})
    with pytest.raises(ValueError):
        Money.model_validate({"amount": "NaN", "currency": "CZK"})


@given(a=COSTS, b=COSTS)
def test_money_arithmetic_refuses_mixed_currencies(a, b):
    czk, eur = Money.of(a, "CZK"), Money.of(b, "EUR")
    for combine in (
        lambda: czk + eur,
        lambda: czk - eur,
        lambda: czk < eur,
        lambda: czk >= eur,
    ):
        with pytest.raises(CurrencyMismatch):
            combine()
    assert (czk + Money.of(b, "CZK")).amount == a + b
    with pytest.raises(TypeError):
        czk * 1.1  # type: ignore[operator]


# --- price_line: properties ----------------------------------------------------------------------


@given(
    cost=COSTS,
    distributor=MARKUPS,
    markup=MARKUPS,
    quantity=QUANTITIES,
    currency=CURRENCIES,
)
def test_every_layer_is_decimal_in_the_resellers_currency_rounded_half_up_exactly_once(
    cost, distributor, markup, quantity, currency
):
    line = price_line(
        pricing(currency, str(distributor)),
        row(cost, currency, erp=cost),
        quantity=quantity,
        overrides=OfferOverrides(markup_percent=markup),
    )
    assert line.currency == currency
    for money in amounts(line):
        assert isinstance(money.amount, Decimal) and money.currency == currency
        assert money.amount == exact_half_up(money.amount, currency)  # on the minor unit
    unit = line.unit
    # Each unit price is rounded once, at the end of its own computation from unrounded inputs.
    assert unit.microsoft_cost.amount == exact_half_up(cost, currency)
    reseller_cost = exact_half_up(cost * (1 + distributor / 100), currency)
    assert unit.reseller_cost.amount == reseller_cost
    # The customer price is built on the reseller cost as the reseller is invoiced it.
    assert unit.customer_price.amount == exact_half_up(reseller_cost * (1 + markup / 100), currency)
    assert unit.margin == unit.customer_price - unit.reseller_cost
    assert line.markup_percent == markup and line.source is PriceSource.ENTRY_MARKUP
    assert not line.below_cost and unit.margin.amount >= 0


@given(cost=COSTS, distributor=MARKUPS, markup=MARKUPS, quantity=QUANTITIES, currency=CURRENCIES)
def test_extended_amounts_are_the_rounded_unit_price_times_quantity(
    cost, distributor, markup, quantity, currency
):
    line = price_line(
        pricing(currency, str(distributor), str(markup)),
        row(cost, currency, erp=cost),
        quantity=quantity,
    )
    for name, unit in dict(line.unit).items():
        extended = getattr(line.extended, name)
        assert extended == unit * quantity, name  # exact: never rounded a second time


def test_an_invoice_line_adds_up_where_rounding_the_unrounded_total_would_not():
    # 10.005 a unit: the invoice shows 10.01 × 3 = 30.03, not round(30.015) = 30.02.
    line = price_line(pricing(default="0"), row("10.005"), quantity=3)
    assert line.unit.customer_price == Money.of("10.01", "CZK")
    assert line.extended.customer_price == Money.of("30.03", "CZK")
    assert exact_half_up(Decimal("10.005") * 3, "CZK") == Decimal("30.02")


def test_the_customer_price_follows_the_cost_the_reseller_is_shown():
    # 100.006 × 1.05 = 105.0063 → reseller cost 105.01; × 1.10 = 115.511 → 115.51.
    # (From the unrounded 105.0063 it would be 115.50693 → 115.51 too; this one differs:)
    line = price_line(pricing(distributor="5"), row("100.006"))
    assert line.unit.reseller_cost == Money.of("105.01", "CZK")
    assert line.unit.customer_price == (line.unit.reseller_cost * Decimal("1.1")).rounded()
    assert line.unit.margin == Money.of("10.50", "CZK")


@given(cost=COSTS, other_cost=COSTS, cents=st.integers(min_value=0, max_value=10**9))
def test_a_pinned_price_stays_whatever_microsofts_cost_does(cost, other_cost, cents):
    pinned = Money.of(Decimal(cents) / 100, "CZK")
    overrides = OfferOverrides(pinned_price=pinned, markup_percent=Decimal(25))
    before = price_line(pricing(distributor="3"), row(cost), overrides=overrides)
    after = price_line(pricing(distributor="3"), row(other_cost), overrides=overrides)
    assert before.unit.customer_price == after.unit.customer_price == pinned
    assert before.pinned and before.source is PriceSource.PINNED_PRICE
    for line in (before, after):
        assert line.below_cost is (pinned < line.unit.reseller_cost)
        assert line.unit.margin == pinned - line.unit.reseller_cost


@given(cost=COSTS, markup=MARKUPS)
def test_margin_and_markup_percentages_agree_with_the_amounts(cost, markup):
    line = price_line(pricing(), row(cost), overrides=OfferOverrides(markup_percent=markup))
    price, margin = line.unit.customer_price.amount, line.unit.margin.amount
    if price:
        assert line.margin_percent == (margin * 100 / price).quantize(
            Decimal("0.01"), ROUND_HALF_UP
        )
        realised = (margin * 100 / line.unit.reseller_cost.amount).quantize(
            Decimal("0.01"), ROUND_HALF_UP
        )
        assert line.margin_percent is not None and line.margin_percent <= realised
    else:
        assert line.margin_percent is None


def test_the_line_beats_the_entry_which_beats_the_resellers_default():
    entry = OfferOverrides(markup_percent=Decimal(20))
    pinned = OfferOverrides(pinned_price=Money.of("150", "CZK"), markup_percent=Decimal(20))
    cases = [
        (None, None, "110.00", PriceSource.DEFAULT_MARKUP),
        (entry, None, "120.00", PriceSource.ENTRY_MARKUP),
        (pinned, None, "150.00", PriceSource.PINNED_PRICE),
        (pinned, LineOverride(markup_percent=Decimal(12)), "112.00", PriceSource.LINE_MARKUP),
        (
            pinned,
            LineOverride(unit_price=Money.of("99.995", "CZK")),
            "100.00",
            PriceSource.LINE_PRICE,
        ),
    ]
    for overrides, line, price, source in cases:
        priced = price_line(pricing(), row("100"), overrides=overrides, line=line)
        assert priced.unit.customer_price == Money.of(price, "CZK"), source
        assert priced.source is source


def test_the_recommended_price_is_the_resellers_override_else_microsofts_erp():
    assert price_line(pricing(), row("100", erp="125.555")).unit.recommended_retail_price == (
        Money.of("125.56", "CZK")
    )
    override = OfferOverrides(recommended_price=Money.of("130", "CZK"))
    line = price_line(pricing(), row("100", erp="125"), overrides=override)
    assert line.unit.recommended_retail_price == Money.of("130", "CZK")
    assert price_line(pricing(), row("100")).unit.recommended_retail_price is None


def test_jpy_has_no_minor_unit():
    line = price_line(pricing("JPY", "5"), row("1000.5", "JPY"), quantity=2)
    assert line.unit.reseller_cost == Money.of("1051", "JPY")  # 1050.525 → 1051
    assert line.unit.customer_price == Money.of("1156", "JPY")  # 1156.1 → 1156
    assert line.extended.customer_price == Money.of("2312", "JPY")


def test_mixed_currencies_are_refused_naming_the_field():
    with pytest.raises(CurrencyMismatch) as err:
        price_line(pricing("CZK"), row("100", "EUR"))
    assert err.value.errors[0].field == "priceSheet.currency"
    with pytest.raises(CurrencyMismatch) as err:
        price_line(pricing(), row("100"), line=LineOverride(unit_price=Money.of("5", "EUR")))
    assert err.value.errors[0].field == "unitPrice.currency"
    with pytest.raises(CurrencyMismatch):
        price_line(
            pricing(), row("100"), overrides=OfferOverrides(pinned_price=Money.of("5", "EUR"))
        )
    with pytest.raises(CurrencyMismatch):
        price_line(
            pricing(),
            row("100"),
            overrides=OfferOverrides(recommended_price=Money.of("5", "EUR")),
        )


def test_a_line_takes_a_markup_or_a_price_and_a_sane_quantity():
    with pytest.raises(ValueError):
        LineOverride(markup_percent=Decimal(1), unit_price=Money.of("1", "CZK"))
    with pytest.raises(ValidationFailed) as err:
        price_line(pricing(), row("1"), quantity=0)
    assert err.value.errors[0].field == "quantity"
    with pytest.raises(ValidationFailed) as err:
        price_line(pricing(), row("1"), line=LineOverride(markup_percent=Decimal(-100)))
    assert err.value.errors[0].field == "markupPercent"


def test_a_priced_line_is_frozen_and_survives_json():
    line = price_line(pricing(distributor="5"), row("100.1234", erp="130"), quantity=7)
    with pytest.raises(ValueError):
        line.quantity = 8  # type: ignore[misc]
    assert PricedLine.model_validate_json(line.model_dump_json()) == line


# --- mark-up rules ---------------------------------------------------------------------------


def test_a_negative_markup_needs_below_cost_on_purpose():
    with pytest.raises(ValidationFailed) as err:
        check_markup(Decimal("-5"), below_cost=False, field="markupPercent")
    assert err.value.errors[0].field == "markupPercent"
    assert check_markup(Decimal("-5"), below_cost=True, field="m") == Decimal("-5")
    with pytest.raises(ValidationFailed):
        check_markup(Decimal("-100"), below_cost=True, field="m")


@given(markup=MARKUPS)
def test_markup_and_margin_convert_both_ways(markup):
    margin = margin_from_markup(markup)
    assert 0 <= margin < 100
    assert abs(markup_from_margin(margin) - markup) < Decimal("1e-20")


@given(margin=MARGINS)
def test_margin_and_markup_convert_both_ways(margin):
    markup = markup_from_margin(margin)
    assert abs(margin_from_markup(markup) - margin) < Decimal("1e-20")


# --- stored before amounts carried a currency --------------------------------------------------


def test_old_rows_are_read_a_default_margin_as_the_default_markup_and_bare_amounts_as_xxx():
    codec = EntityCodec(Reseller)
    new = Reseller(
        slug="demo",
        name="Demo",
        mpn_id="12345678",
        country="CZ",
        currency="CZK",
        default_markup_percent=Decimal("12.5"),
        settings=ResellerSettings(appearance=Appearance(display_name="Demo")),
    )
    written = codec.to_properties(new)
    assert "DefaultMarkupPercent" in written and "DefaultMarginPercent" not in written
    old_reseller = {k: v for k, v in written.items() if k != "DefaultMarkupPercent"}
    old_reseller["DefaultMarginPercent"] = "12.5"
    reseller = EntityCodec(Reseller).from_entity(old_reseller)
    assert reseller.default_markup_percent == Decimal("12.5")
    assert reseller.distributor_markup_percent is None

    old_entry = EntityCodec(CatalogEntry).to_properties(
        CatalogEntry(reseller="demo", product_id="CFQ7TTC0LFLX")
    )
    old_entry["RecommendedPrices"] = (
        '[{"sku_id":"0001","segment":"commercial","term":"P1Y",'
        '"billing_cycle":"annual","amount":"1234.57"}]'
    )
    old_entry["OfferMarkups"] = (
        '[{"sku_id":"0001","segment":"commercial","term":"P1M",'
        '"billing_cycle":"monthly","markup_percent":"12.5"}]'
    )
    entry = EntityCodec(CatalogEntry).from_entity(old_entry)
    assert entry.recommended_prices[0].price == Money.of("1234.57", NO_CURRENCY)
    adopted = entry.in_currency("CZK")
    assert adopted.recommended_prices[0].price == Money.of("1234.57", "CZK")
    assert adopted.overrides_for("0001", "commercial", "P1M", "monthly").markup_percent == (
        Decimal("12.5")
    )
    assert adopted.priced
    stored = EntityCodec(CatalogEntry).to_properties(adopted)
    assert '"price":{"amount":"1234.57","currency":"CZK"}' in stored["RecommendedPrices"]

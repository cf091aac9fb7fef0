"""Money and pricing: Decimal only, explicit rounding to the currency's minor unit, half-up.

A customer price is built as `base × catalog mark-up × subscription mark-up` (each mark-up a
percentage over what it multiplies) and rounded once, at the end. A customer target price is
stored as the mark-up it implies, so that it follows the cost when Microsoft's price changes.

Margin and mark-up are both percentages of the same amount (price − cost): mark-up relative to
the cost, margin relative to the price. "Default margin 10 %" in the guide is a mark-up of 10 %
over the reseller's purchase price.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from shared.domain.errors import FieldError, ValidationFailed

HUNDRED = Decimal(100)
ZERO = Decimal(0)
# ISO 4217 minor units of currencies that differ from the usual two (and those we sell in).
_MINOR_UNITS = {
    "CZK": 2,
    "EUR": 2,
    "USD": 2,
    "GBP": 2,
    "PLN": 2,
    "HUF": 2,
    "CHF": 2,
    "JPY": 0,
    "KRW": 0,
    "ISK": 0,
    "BHD": 3,
    "KWD": 3,
    "OMR": 3,
    "TND": 3,
}
# A stored mark-up keeps this many decimal places of a percent: enough for a target price to
# come back exactly after rounding (the error is cost × 1e-12, far below half a minor unit).
MARKUP_QUANTUM = Decimal("1e-10")
# A mark-up of -100 % would make the price zero; below that it is negative.
MIN_MARKUP = Decimal(-100)
MAX_MARKUP = Decimal(100000)


def minor_unit(currency: str) -> Decimal:
    """The smallest amount of a currency (0.01 for CZK and EUR)."""
    return Decimal(1).scaleb(-_MINOR_UNITS.get(currency.upper(), 2))


def round_money(amount: Decimal, currency: str) -> Decimal:
    """`amount` rounded to the currency's minor unit, half away from zero."""
    return amount.quantize(minor_unit(currency), rounding=ROUND_HALF_UP)


def factor(markup_percent: Decimal) -> Decimal:
    """The multiplier of a mark-up: 10 % → 1.10."""
    return 1 + markup_percent / HUNDRED


def apply_markups(base: Decimal, currency: str, *markups: Decimal) -> Decimal:
    """`base × (1 + m1) × (1 + m2) …`, rounded once to the minor unit."""
    amount = base
    for markup in markups:
        amount *= factor(markup)
    return round_money(amount, currency)


def implied_markup(target: Decimal, cost: Decimal) -> Decimal:
    """The mark-up (percent over `cost`) that turns `cost` into `target`."""
    if cost <= ZERO:
        raise ValidationFailed([FieldError("customerPrice", "the cost is zero: set a mark-up")])
    return ((target / cost - 1) * HUNDRED).quantize(MARKUP_QUANTUM, rounding=ROUND_HALF_UP)


def margin_from_markup(markup_percent: Decimal) -> Decimal:
    """Margin (percent of the price) of a mark-up (percent over cost): 25 % → 20 %."""
    if markup_percent <= MIN_MARKUP:
        raise ValueError("a mark-up of -100 % or less has no margin")
    return markup_percent * HUNDRED / (HUNDRED + markup_percent)


def markup_from_margin(margin_percent: Decimal) -> Decimal:
    """Mark-up (percent over cost) of a margin (percent of the price): 20 % → 25 %."""
    if margin_percent >= HUNDRED:
        raise ValueError("a margin of 100 % or more has no finite mark-up")
    return margin_percent * HUNDRED / (HUNDRED - margin_percent)


def check_markup(markup_percent: Decimal, *, below_cost: bool, field: str) -> Decimal:
    """A mark-up as a rule may hold it: negative only when a price below cost is meant."""
    try:
        value = Decimal(markup_percent)
    except InvalidOperation as exc:
        raise ValidationFailed([FieldError(field, "is not a number")]) from exc
    if not value.is_finite() or value <= MIN_MARKUP or value > MAX_MARKUP:
        raise ValidationFailed([FieldError(field, "must be above -100 and at most 100000")])
    if value < ZERO and not below_cost:
        raise ValidationFailed(
            [FieldError(field, "is below cost: set belowCost to true to sell at a loss")]
        )
    return value


@dataclass(frozen=True)
class PriceBreakdown:
    """One offer's prices for one customer, all in one currency and rounded."""

    currency: str
    cost: Decimal
    recommended_price: Decimal
    customer_price: Decimal

    @property
    def margin(self) -> Decimal:
        """What the reseller keeps per unit (negative only for a price set below cost)."""
        return self.customer_price - self.cost

    @property
    def margin_percent(self) -> Decimal | None:
        """Margin as a percent of the customer price (None for a free offer)."""
        if self.customer_price == ZERO:
            return None
        return (self.margin * HUNDRED / self.customer_price).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_UP
        )

    @property
    def markup_percent(self) -> Decimal | None:
        """Margin as a percent over the cost (None for a free offer)."""
        if self.cost == ZERO:
            return None
        return (self.margin * HUNDRED / self.cost).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def breakdown(
    cost: Decimal,
    recommended: Decimal,
    currency: str,
    *markups: Decimal,
) -> PriceBreakdown:
    """Cost, recommended price and customer price (`cost` under `markups`), rounded."""
    return PriceBreakdown(
        currency=currency,
        cost=round_money(cost, currency),
        recommended_price=round_money(recommended, currency),
        customer_price=apply_markups(cost, currency, *markups),
    )

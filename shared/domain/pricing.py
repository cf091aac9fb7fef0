"""Price layers and `price_line`: what one line of an offer costs whom, in one currency.

Layers (DESIGN.md "Money and prices"):

- Microsoft cost: the price sheet's unit price (distributor admins only);
- reseller cost: Microsoft cost × (1 + the distributor's mark-up for that reseller);
- recommended retail price: the reseller's override for the offer, else Microsoft's ERP;
- customer price: reseller cost × (1 + mark-up), the mark-up from the line, else the catalog
  entry (the offer's own, else the product's), else the reseller's default (10 %); or a pinned
  price set by hand (on the line or the entry), kept as a price, never as a mark-up;
- margin: customer price − reseller cost; `margin_percent` is of the price, `markup_percent`
  over the cost.

Rounding rule (what invoices need). Microsoft prices per unit, and every invoice line is
unit price × quantity. So each layer's *unit* price is rounded half-up to the currency's minor
unit exactly once, at the end of its own computation from unrounded inputs, and an extended
amount is that rounded unit price × quantity, exact, never rounded again. An invoice line then
always adds up (unit × quantity = total), and the reseller can reproduce its customer price from
what it is shown: the reseller cost is itself an invoiced unit price (the distributor bills it),
so the customer price is round(reseller cost × (1 + mark-up)), and the reseller cost is
round(Microsoft cost × (1 + distributor mark-up)) from the price sheet's unrounded figure.
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.domain.errors import FieldError, ValidationFailed
from shared.domain.money import CurrencyMismatch, Money, minor_unit, round_money

__all__ = ["minor_unit", "round_money"]

HUNDRED = Decimal(100)
ZERO = Decimal(0)
PERCENT_QUANTUM = Decimal("0.01")
DEFAULT_MARKUP_PERCENT = Decimal(10)
# A mark-up of -100 % would make the price zero; below that it is negative.
MIN_MARKUP = Decimal(-100)
MAX_MARKUP = Decimal(100000)
MAX_QUANTITY = 1_000_000


def factor(markup_percent: Decimal) -> Decimal:
    """The multiplier of a mark-up: 10 % → 1.10."""
    return 1 + markup_percent / HUNDRED


def percent(part: Decimal, whole: Decimal) -> Decimal | None:
    """`part` as a percent of `whole`, to two decimals half-up (None when `whole` is zero)."""
    if whole == ZERO:
        return None
    return (part * HUNDRED / whole).quantize(PERCENT_QUANTUM, rounding=ROUND_HALF_UP)


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


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ResellerPricing(_Frozen):
    """A reseller's pricing settings, resolved (the distributor's default already applied)."""

    currency: str = Field(pattern=r"^[A-Z]{3}$")
    distributor_markup_percent: Decimal = Field(ge=0)
    default_markup_percent: Decimal = DEFAULT_MARKUP_PERCENT


class PriceSheetRow(_Frozen):
    """One row of Microsoft's price sheet: an offer's unit price per billing period."""

    product_id: str
    sku_id: str
    segment: str
    term: str
    billing_cycle: str
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    microsoft_cost: Decimal = Field(ge=0)  # unrounded, as the price sheet has it
    erp: Decimal | None = Field(None, ge=0)  # Microsoft's estimated retail price
    effective_date: date | None = None


class OfferOverrides(_Frozen):
    """What a reseller's catalog entry says about one offer's prices."""

    recommended_price: Money | None = None
    pinned_price: Money | None = None
    markup_percent: Decimal | None = None  # the offer's own, else the product's


class LineOverride(_Frozen):
    """What one order or quote line says by hand: a mark-up, or a unit price (not both)."""

    markup_percent: Decimal | None = None
    unit_price: Money | None = None

    @model_validator(mode="after")
    def _one(self) -> LineOverride:
        if self.markup_percent is not None and self.unit_price is not None:
            raise ValueError("give a mark-up or a unit price, not both")
        return self


class PriceSource(StrEnum):
    """Where a line's customer price came from."""

    LINE_PRICE = "linePrice"  # a unit price typed on the line
    LINE_MARKUP = "lineMarkup"
    PINNED_PRICE = "pinnedPrice"  # the catalog entry's pinned price for the offer
    ENTRY_MARKUP = "entryMarkup"  # the catalog entry's mark-up (the offer's or the product's)
    DEFAULT_MARKUP = "defaultMarkup"  # the reseller's default


class LayerAmounts(_Frozen):
    """One amount per price layer, all in one currency and rounded."""

    microsoft_cost: Money
    reseller_cost: Money
    recommended_retail_price: Money | None
    customer_price: Money
    margin: Money

    def times(self, quantity: int) -> LayerAmounts:
        """Every amount × `quantity` (exact: the unit amounts are already rounded)."""
        rrp = self.recommended_retail_price
        return LayerAmounts(
            microsoft_cost=self.microsoft_cost * quantity,
            reseller_cost=self.reseller_cost * quantity,
            recommended_retail_price=None if rrp is None else rrp * quantity,
            customer_price=self.customer_price * quantity,
            margin=self.margin * quantity,
        )


class PricedLine(_Frozen):
    """A line priced in every layer: what orders and quotes store as the price they showed."""

    price_sheet: PriceSheetRow
    currency: str
    quantity: int = Field(ge=1)
    distributor_markup_percent: Decimal
    markup_percent: Decimal | None  # over reseller cost: as applied, or as a pinned price implies
    margin_percent: Decimal | None  # of the customer price
    source: PriceSource
    below_cost: bool
    unit: LayerAmounts
    extended: LayerAmounts

    @property
    def pinned(self) -> bool:
        """Whether the customer price was set by hand as a price (not from a mark-up)."""
        return self.source in (PriceSource.LINE_PRICE, PriceSource.PINNED_PRICE)


def _customer_unit(
    reseller: ResellerPricing,
    reseller_cost: Money,
    overrides: OfferOverrides,
    line: LineOverride | None,
) -> tuple[Money, Decimal | None, PriceSource]:
    """The rounded customer unit price, the mark-up it was built with, and where it came from."""
    if line is not None and line.unit_price is not None:
        return line.unit_price.rounded(), None, PriceSource.LINE_PRICE
    if line is not None and line.markup_percent is not None:
        markup, source = line.markup_percent, PriceSource.LINE_MARKUP
    elif overrides.pinned_price is not None:
        return overrides.pinned_price.rounded(), None, PriceSource.PINNED_PRICE
    elif overrides.markup_percent is not None:
        markup, source = overrides.markup_percent, PriceSource.ENTRY_MARKUP
    else:
        markup, source = reseller.default_markup_percent, PriceSource.DEFAULT_MARKUP
    return (reseller_cost * factor(markup)).rounded(), markup, source


def price_line(
    reseller: ResellerPricing,
    row: PriceSheetRow,
    *,
    quantity: int = 1,
    overrides: OfferOverrides | None = None,
    line: LineOverride | None = None,
) -> PricedLine:
    """Price `quantity` units of the offer of `row` for the reseller's customer, every layer.

    Every amount is in the reseller's currency (a row, override or line price in another is
    refused); unit amounts are rounded once, extended amounts are unit × quantity (see the
    module docstring for why).
    """
    currency = reseller.currency
    if row.currency != currency:
        raise CurrencyMismatch(currency, row.currency, "priceSheet.currency")
    if line is not None and line.unit_price is not None and line.unit_price.currency != currency:
        raise CurrencyMismatch(currency, line.unit_price.currency, "unitPrice.currency")
    if isinstance(quantity, bool) or not 1 <= quantity <= MAX_QUANTITY:
        raise ValidationFailed([FieldError("quantity", f"must be 1 to {MAX_QUANTITY}")])
    if line is not None and line.markup_percent is not None:
        check_markup(line.markup_percent, below_cost=True, field="markupPercent")
    overrides = overrides or OfferOverrides()
    microsoft = Money(amount=row.microsoft_cost, currency=row.currency)
    reseller_cost = (microsoft * factor(reseller.distributor_markup_percent)).rounded()
    customer, markup, source = _customer_unit(reseller, reseller_cost, overrides, line)
    recommended = overrides.recommended_price
    if recommended is None and row.erp is not None:
        recommended = Money(amount=row.erp, currency=row.currency)
    if recommended is not None:
        recommended = (recommended + Money.zero(currency)).rounded()  # refuses another currency
    margin = customer - reseller_cost
    unit = LayerAmounts(
        microsoft_cost=microsoft.rounded(),
        reseller_cost=reseller_cost,
        recommended_retail_price=recommended,
        customer_price=customer,
        margin=margin,
    )
    return PricedLine(
        price_sheet=row,
        currency=currency,
        quantity=quantity,
        distributor_markup_percent=reseller.distributor_markup_percent,
        markup_percent=markup
        if markup is not None
        else percent(margin.amount, reseller_cost.amount),
        margin_percent=percent(margin.amount, customer.amount),
        source=source,
        below_cost=customer < reseller_cost,
        unit=unit,
        extended=unit.times(quantity),
    )

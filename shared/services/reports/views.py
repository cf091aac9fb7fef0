"""The reports' flat row models, one per audience (DESIGN "Money and prices").

Rows are flat so an export can turn each field into a column: the field's `title` is the column
heading, amounts are decimal strings beside the row's one `currency`, rounded half-up to the
currency's minor unit here, where they are shown (the ledger's figures are exact).

A customer user's models have no cost, margin or mark-up field at all (`...Public`); reseller
staff see the reseller's cost and margin (`...Staff`); Microsoft's cost is on the distributor
admins' licence rows only (`...Distributor`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from pydantic import Field

from shared.domain.ledger import Figures
from shared.domain.model import WireModel
from shared.domain.money import round_money
from shared.domain.pricing import percent
from shared.services.access import Audience


def money(amount: Decimal | None, currency: str) -> Decimal | None:
    """An amount as shown: rounded half-up to the currency's minor unit."""
    return None if amount is None else round_money(amount, currency)


@dataclass(frozen=True)
class Shown:
    """A price and its cost as shown (each rounded once), and what follows from the two shown
    amounts, so that a row adds up as read: margin = shown price − shown cost."""

    price: Decimal
    cost: Decimal

    @property
    def margin(self) -> Decimal:
        """Shown price − shown cost."""
        return self.price - self.cost

    @property
    def margin_percent(self) -> Decimal | None:
        """The shown margin as a percent of the shown price."""
        return percent(self.margin, self.price)

    @property
    def markup_percent(self) -> Decimal | None:
        """The shown margin as a percent of the shown cost."""
        return percent(self.margin, self.cost)


def shown(price: Decimal, cost: Decimal, currency: str) -> Shown:
    """An exact price and cost as shown, with their margin (see `Shown`)."""
    return Shown(round_money(price, currency), round_money(cost, currency))


# --- month figures (totals, series) -----------------------------------------------------------


class FiguresPublic(WireModel):
    """Seats, subscriptions and the customer price per month."""

    seats: int = Field(title="Seats", description="Live seats at month end (now, this month).")
    subscriptions: int = Field(title="Subscriptions", description="Live subscriptions.")
    monthly_price: Decimal = Field(
        title="Customer price per month",
        description="Recurring customer price per month (an annual price ÷ 12), rounded from "
        "the exact sum: it may differ from the sum of the rows shown by rounding.",
    )
    currency: str = Field(title="Currency")


class FiguresStaff(FiguresPublic):
    """The figures with the reseller's cost and margin."""

    monthly_cost: Decimal = Field(
        title="Reseller cost per month",
        description="Rounded from the exact sum, like the price.",
    )
    margin: Decimal = Field(
        title="Margin per month", description="Price − reseller cost, as shown here."
    )
    margin_percent: Decimal | None = Field(title="Margin %", description="Of the price.")


def figures_values(f: Figures, currency: str, audience: Audience) -> dict[str, Any]:
    """The fields of `FiguresPublic` or `FiguresStaff` for figures `f`."""
    values: dict[str, Any] = {
        "seats": f.seats,
        "subscriptions": f.subscriptions,
        "monthly_price": money(f.mrr, currency),
        "currency": currency,
    }
    if audience is not Audience.CUSTOMER:
        monthly = shown(f.mrr, f.mrr_cost, currency)
        values |= {
            "monthly_cost": monthly.cost,
            "margin": monthly.margin,
            "margin_percent": monthly.margin_percent,
        }
    return values


class _CustomerKey(WireModel):
    customer_id: str = Field(title="Customer ID")
    customer_name: str | None = Field(title="Customer")


class _MonthKey(WireModel):
    month: str = Field(title="Month")
    opened: bool = Field(
        title="Month complete",
        description="The month's opening finished: every subscription live when it began is "
        "counted (until then its figures may be incomplete).",
    )


# The key's fields come first (pydantic orders fields from the last base to the first).
class CustomerTotalsPublic(FiguresPublic, _CustomerKey):
    """One customer's figures for the month."""


class CustomerTotalsStaff(FiguresStaff, _CustomerKey):
    """One customer's figures for the month, with cost and margin."""


class LicenceMonthPublic(FiguresPublic, _MonthKey):
    """One month of the licence series."""


class LicenceMonthStaff(FiguresStaff, _MonthKey):
    """One month of the licence series, with cost and margin."""


# --- licence rows -----------------------------------------------------------------------------


class LicenceRowPublic(WireModel):
    """One subscription in one month, at the customer's price."""

    month: str = Field(title="Month")
    customer_id: str = Field(title="Customer ID")
    customer_name: str | None = Field(title="Customer")
    subscription_id: str = Field(title="Subscription ID")
    subscription_name: str = Field(title="Subscription")
    product_id: str | None = Field(title="Product ID")
    catalog_item_id: str | None = Field(title="Catalog item ID")
    term_duration: str | None = Field(title="Term")
    billing_cycle: str | None = Field(title="Billing cycle")
    status: str = Field(title="Status")
    is_trial: bool = Field(title="Trial")
    seats_at_start: int = Field(
        title="Seats at month start", description="0 when it is new this month."
    )
    seats_at_end: int = Field(
        title="Seats at month end",
        description="Live seats now (this month) or at month end; 0 once it has ended.",
    )
    seats_assigned: int | None = Field(title="Seats assigned")
    renews_on: date | None = Field(title="Renews on")
    currency: str = Field(title="Currency")
    unit_price: Decimal | None = Field(
        title="Unit price", description="Customer price per seat and billing period."
    )
    total_price: Decimal | None = Field(
        title="Total price", description="Unit price × seats at month end, per billing period."
    )
    monthly_price: Decimal = Field(
        title="Customer price per month", description="Recurring price per month (annual ÷ 12)."
    )


class LicenceRowStaff(LicenceRowPublic):
    """One subscription in one month, with the reseller's cost and margin."""

    unit_cost: Decimal | None = Field(title="Unit reseller cost")
    total_cost: Decimal | None = Field(title="Total reseller cost")
    monthly_cost: Decimal = Field(title="Reseller cost per month")
    margin: Decimal = Field(
        title="Margin per month", description="Price − reseller cost per month, as shown."
    )
    margin_percent: Decimal | None = Field(title="Margin %", description="Of the price.")
    markup_percent: Decimal | None = Field(title="Mark-up %", description="Over the cost.")


class LicenceRowDistributor(LicenceRowStaff):
    """One subscription in one month, with Microsoft's cost too (distributor admins)."""

    unit_microsoft_cost: Decimal | None = Field(title="Unit Microsoft cost")
    total_microsoft_cost: Decimal | None = Field(title="Total Microsoft cost")


LICENCE_ROW: dict[Audience, type[LicenceRowPublic]] = {
    Audience.CUSTOMER: LicenceRowPublic,
    Audience.RESELLER: LicenceRowStaff,
    Audience.DISTRIBUTOR: LicenceRowDistributor,
}


# --- revenue ----------------------------------------------------------------------------------


class RevenueMonthPublic(WireModel):
    """One month of recurring revenue: how it moved from the month's opening."""

    month: str = Field(title="Month")
    currency: str = Field(title="Currency")
    opening_mrr: Decimal = Field(title="Opening MRR", description="At the month's start.")
    new: Decimal = Field(
        title="New",
        description="From subscriptions new this month. Each movement is rounded from its "
        "exact sum, so the movements may differ from the net change by rounding.",
    )
    expansion: Decimal = Field(title="Expansion")
    contraction: Decimal = Field(title="Contraction")
    churn: Decimal = Field(title="Churn", description="From subscriptions that ended.")
    net_change: Decimal = Field(title="Net change", description="MRR − opening MRR.")
    mrr: Decimal = Field(title="MRR", description="At month end (now, this month).")
    seats: int = Field(title="Seats")
    subscriptions: int = Field(title="Subscriptions")


class RevenueMonthStaff(RevenueMonthPublic):
    """One month of recurring revenue, with the reseller's cost and margin."""

    reseller_cost: Decimal = Field(title="Reseller cost per month")
    margin: Decimal = Field(title="Margin per month", description="MRR − reseller cost, as shown.")
    margin_percent: Decimal | None = Field(title="Margin %", description="Of the MRR.")

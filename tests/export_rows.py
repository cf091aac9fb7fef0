"""Small report row models for the export tests and bench: a staff view and a customer view."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from pydantic import AwareDatetime, Field

from shared.domain.model import WireModel
from shared.domain.money import Money

COST_WORDS = ("cost", "margin", "markup", "mark-up")


def scan_for_cost(value: object) -> list[str]:
    """Every key, title or text, at any depth, that names a cost, a margin or a mark-up."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found += scan_for_cost(key) + scan_for_cost(item)
    elif isinstance(value, list | tuple):
        for item in value:
            found += scan_for_cost(item)
    elif isinstance(value, str) and any(w in value.lower().replace(" ", "") for w in COST_WORDS):
        found.append(value)
    return found


class Term(StrEnum):
    MONTHLY = "P1M"
    ANNUAL = "P1Y"


class LinePublic(WireModel):
    """A customer user's row: its own price, nothing about the reseller's cost."""

    customer_name: str
    product: str = Field(title="Product name")
    term: Term
    seats: int
    unit_price: Money
    total_price: Money | None = None
    renews_on: date | None = None
    changed_at: AwareDatetime
    auto_renew: bool = True


class LineStaff(LinePublic):
    """Reseller staff's row: the customer's price and what it costs the reseller."""

    reseller_cost: Money
    margin: Money
    markup_percent: Decimal


def staff_line(i: int, currency: str = "CZK") -> LineStaff:
    """A deterministic staff row number `i`."""
    price = Decimal(1000 + i) / 100 + Decimal("0.005")  # three decimals: rounding would show
    cost = Decimal(900 + i) / 100
    return LineStaff(
        customer_name=f"Zákazník {i} s.r.o.",
        product="Microsoft 365 Business Standard",
        term=Term.ANNUAL if i % 2 else Term.MONTHLY,
        seats=i % 50 + 1,
        unit_price=Money.of(price, currency),
        total_price=Money.of(price * (i % 50 + 1), currency),
        renews_on=date(2026, 12, 1) + timedelta(days=i % 28),
        changed_at=datetime(2026, 11, 3, 10, 15, tzinfo=UTC) + timedelta(minutes=i),
        auto_renew=bool(i % 3),
        reseller_cost=Money.of(cost, currency),
        margin=Money.of(price - cost, currency),
        markup_percent=Decimal("10.00"),
    )


def public_line(i: int, currency: str = "CZK") -> LinePublic:
    """The customer's view of staff row `i`."""
    return LinePublic.model_validate(staff_line(i, currency).model_dump(include=_PUBLIC_FIELDS))


_PUBLIC_FIELDS = set(LinePublic.model_fields)


def staff_lines(n: int) -> Iterator[LineStaff]:
    """`n` staff rows, made one at a time (as a report reads them page by page)."""
    return (staff_line(i) for i in range(n))

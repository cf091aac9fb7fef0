"""Ledger facts for report tests, and an in-memory ledger behind a container's reports."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from shared.bootstrap import Container
from shared.domain.ledger import LedgerFact, PricedState
from tests.ledger_fakes import InMemoryLedger

PRODUCT = "CFQ7TTC0LH18"
OTHER_PRODUCT = "CFQ7TTC0LF8Q"


def state(seats: int = 10, **over: Any) -> PricedState:
    """A live monthly subscription of `seats` seats: Microsoft 100, reseller 110, customer 121
    per seat and month (CZK)."""
    values: dict[str, Any] = {
        "product_id": PRODUCT,
        "catalog_item_id": f"{PRODUCT}:0001:{PRODUCT}",
        "name": "Microsoft 365 Business Basic",
        "term_duration": "P1Y",
        "billing_cycle": "monthly",
        "status": "active",
        "seats": seats,
        "assigned": seats - 1,
        "currency": "CZK",
        "unit_microsoft_cost": Decimal("100.00"),
        "unit_reseller_cost": Decimal("110.00"),
        "unit_customer_price": Decimal("121.00"),
    }
    values.update(over)
    return PricedState.model_validate(values)


def fact(
    at: datetime, customer: str, sub: str, st: PricedState, reseller: str = "demo"
) -> LedgerFact:
    """A ledger fact: subscription `sub` of `customer` is in state `st` from `at`."""
    return LedgerFact(reseller=reseller, customer_id=customer, subscription_id=sub, at=at, state=st)


def install_ledger(c: Container, facts: Iterable[LedgerFact], months: list[str]) -> InMemoryLedger:
    """An in-memory ledger, rebuilt from `facts` over `months`, behind the container's reports."""
    ledger = InMemoryLedger()
    ledger.load(facts, months)
    c.__dict__["ledger_reader"] = ledger
    c.__dict__.pop("reports_book", None)
    return ledger

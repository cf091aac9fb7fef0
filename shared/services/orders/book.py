"""The order book (the records orders work on) and finding an order in the caller's world."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from shared.domain.customers import Customer, CustomerStatus
from shared.domain.errors import Conflict, NotFound, RuleBroken
from shared.domain.identity import CUSTOMER_ID_PATTERN, Principal, Reseller, User
from shared.domain.notifications import Notification
from shared.domain.orders import Order, order_row_key
from shared.domain.subscriptions import Subscription
from shared.ports import Clock, Repository, StepScheduler
from shared.services import access
from shared.services.attribution import SYSTEM as SYSTEM
from shared.services.catalog import CatalogReader

BLOCKING_CUSTOMER_STATUSES = frozenset({"Blocked", CustomerStatus.FAILED.value})
# The problem type of an order or change for a customer the reseller no longer has.
CUSTOMER_UNASSOCIATED = "customer-unassociated"

_CUSTOMER_ID = re.compile(CUSTOMER_ID_PATTERN)
_ORDER_ID = re.compile(r"[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}")


@dataclass
class OrderPolicy:
    """How the step waits (from the settings)."""

    poll_seconds: float = 10.0
    customer_wait_seconds: float = 30.0
    max_polls: int = 60
    # How long an order may stay Submitted or Provisioning before the watchdog acts.
    stuck_after: timedelta = timedelta(minutes=30)


@dataclass
class OrderBook:
    """The records and helpers the order services work on."""

    orders: Repository[Order]
    subscriptions: Repository[Subscription]
    customers: Repository[Customer]
    resellers: Repository[Reseller]
    catalog: CatalogReader
    clock: Clock
    scheduler: StepScheduler
    notifications: Repository[Notification] | None = None
    users: Repository[User] | None = None
    policy: OrderPolicy = field(default_factory=OrderPolicy)
    # Called after each recorded sub-step of the provisioning (tests stop the process there).
    after_step: Callable[[str], None] | None = None


def customer_of(book: OrderBook, principal: Principal, reseller: str, customer_id: str) -> Customer:
    """The customer, if the caller may see it (NotFound otherwise)."""
    access.ensure_visible(principal, reseller, customer_id)
    found = (
        book.customers.find(reseller, customer_id)
        if _CUSTOMER_ID.fullmatch(customer_id) is not None
        else None
    )
    if found is None:
        raise NotFound("customer not found")
    return found


def ensure_orderable(customer: Customer) -> None:
    """Orders and subscription changes are refused (409) for a Blocked or Failed customer, and
    for one Partner Center no longer lists as the reseller's (the sync's flag): its tenant
    left this reseller, whose orders Microsoft would bill to the wrong partner."""
    if customer.status.value in BLOCKING_CUSTOMER_STATUSES:
        raise Conflict(
            f"the customer is {customer.status.value}: no order can be placed for it"
            + (f" ({customer.failure_reason})" if customer.failure_reason else "")
        )
    if customer.unassociated_since is not None:
        raise RuleBroken(
            CUSTOMER_UNASSOCIATED,
            "Partner Center no longer lists the tenant as this reseller's customer since "
            f"{customer.unassociated_since.date().isoformat()}: no order or subscription change "
            "can be placed for it until the tenant accepts the reseller again",
        )


def get(
    book: OrderBook, principal: Principal, reseller: str, customer_id: str, order_id: str
) -> Order:
    """One order of the customer inside the caller's world (NotFound otherwise)."""
    customer_of(book, principal, reseller, customer_id)
    found = find_order(book, reseller, order_id)
    if found is None or found.customer_id != customer_id:
        raise NotFound("order not found")
    return found


def find_order(book: OrderBook, reseller: str, order_id: str) -> Order | None:
    """The order by its id (None for an id that is not an order's)."""
    # Only a ULID can be an order's id; anything else never reaches a table key.
    if _ORDER_ID.fullmatch(order_id) is None:
        return None
    return book.orders.find(reseller, order_row_key(order_id))

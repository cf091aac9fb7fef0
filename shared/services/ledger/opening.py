"""Months open: every live subscription of the month before is carried into the month.

A subscription nobody touches has no facts in a month, yet is billed in it: the daily timer
carries its row over (`SubscriptionMonth.carried`), the customer's figures and the totals
moving with it in the same transaction (one per customer), then writes the month's opened
marker. A rerun after a crash half-way carries only what is not yet there (a row already in the
month — carried, or started by a fact — is left as it is), so nothing is carried twice.

Months are opened in order, from the oldest not yet opened of the last `LOOKBACK` up to the
current one, so the month before is always complete when a month opens (the rebuild's `replay`
carries through every month, too). A gap longer than that (no timer for over a year) leaves the
months before it out: their subscriptions come back with their next fact, or a rebuild.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from shared.domain.ledger import SubscriptionMonth, month_of, months_ending, previous_month
from shared.ports import Clock, LedgerStore
from shared.services.ledger.projection import carry_on

log = logging.getLogger(__name__)

LOOKBACK = 14


def open_months(store: LedgerStore, clock: Clock, resellers: Iterable[str]) -> dict[str, int]:
    """Open every reseller's months up to the current one; rows carried, per reseller."""
    out: dict[str, int] = {}
    current = month_of(clock.now())
    for reseller in resellers:
        out[reseller] = sum(
            open_month(store, clock, reseller, m) for m in _unopened(store, reseller, current)
        )
    return out


def _unopened(store: LedgerStore, reseller: str, current: str) -> list[str]:
    """The months to open, oldest first: after the latest opened one (of the last LOOKBACK)."""
    months = months_ending(current, LOOKBACK)
    todo: list[str] = []
    for month in reversed(months):
        if store.opened(reseller, month):
            break
        todo.append(month)
    else:
        # None opened within the window: the ledger starts now (or restarts after a gap).
        todo = [current]
    return todo[::-1]


def open_month(store: LedgerStore, clock: Clock, reseller: str, month: str) -> int:
    """Carry the month before's live rows into `month`, customer by customer, then mark it
    opened (idempotent; a rerun carries what is missing); how many rows were carried."""
    if store.opened(reseller, month):
        return 0
    before = _month_before(store, reseller, month)
    carried = 0
    customer: str | None = None
    rows: dict[str, SubscriptionMonth | None] = {}
    for row in before:
        if row.customer_id != customer:
            if customer is not None:
                carried += carry_on(store, clock, month, customer, reseller, rows, opening=True)
            customer, rows = row.customer_id, {}
        if row.closing.live:
            rows[row.subscription_id] = row
    if customer is not None:
        carried += carry_on(store, clock, month, customer, reseller, rows, opening=True)
    store.mark_opened(reseller, month)
    log.info("ledger %s %s opened: %d row(s) carried", reseller, month, carried)
    return carried


def _month_before(store: LedgerStore, reseller: str, month: str) -> Iterable[SubscriptionMonth]:
    """Every subscription row of the month before `month`, in key order (customer first)."""
    token: str | None = None
    while True:
        page = store.subscription_months(
            reseller, previous_month(month), page_size=1000, continuation_token=token
        )
        yield from page.items
        token = page.continuation_token
        if token is None:
            return

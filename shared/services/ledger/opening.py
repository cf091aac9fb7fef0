"""Months open: every live subscription of the month before is carried into the month.

A subscription nobody touches has no facts in a month, yet is billed in it: the timer carries
its row over (`SubscriptionMonth.carried`), the customer's figures and the totals moving with
it in the same transaction (one per customer), then writes the month's opened marker. A rerun
after a crash half-way carries only what is not yet there (a row already in the month —
carried, or started by a fact — is left as it is, or corrected), so nothing is carried twice.

The opening first writes the month's `opening` marker, and only then reads the month before:
a late fact projected into the month before meanwhile either committed before that read (the
opening sees it) or carries itself into the month, which counts as opening from the marker on
(`MonthSlice.carried_into`). Each customer's carry reads the month before's rows again after
reading the month (`projection.carry_on`), so it never carries a state older than one a late
fact carried before it.

Months are opened in order, from the oldest not yet opened of the last `LOOKBACK` up to the
current one, so the month before is always complete when a month opens (the rebuild's `replay`
carries through every month, too). A gap longer than that (no timer for over a year) leaves the
months before it out: their subscriptions come back with their next fact, or a rebuild. One
reseller's failure does not stop the others: it is logged, and the next run (hourly by default)
finishes its opening.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from shared.domain.ledger import month_of, months_ending, previous_month
from shared.ports import Clock, LedgerStore
from shared.services.ledger.paging import PAGE_SIZE, every
from shared.services.ledger.projection import carry_on

log = logging.getLogger(__name__)

LOOKBACK = 14


def open_months(store: LedgerStore, clock: Clock, resellers: Iterable[str]) -> dict[str, int]:
    """Open every reseller's months up to the current one; rows carried, per reseller opened
    (a reseller whose opening failed is logged and left out)."""
    out: dict[str, int] = {}
    current = month_of(clock.now())
    for reseller in resellers:
        try:
            out[reseller] = sum(
                open_month(store, clock, reseller, m) for m in _unopened(store, reseller, current)
            )
        except Exception:
            log.exception("ledger %s: opening its months failed; the next run resumes", reseller)
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
    opened (idempotent; a rerun carries what is missing); how many rows were written."""
    if store.opened(reseller, month):
        return 0
    store.mark_opening(reseller, month)
    carried = sum(
        carry_on(store, clock, month, customer, reseller, None)
        for customer in _customers_before(store, reseller, month)
    )
    store.mark_opened(reseller, month)
    log.info("ledger %s %s opened: %d row(s) carried", reseller, month, carried)
    return carried


def _customers_before(store: LedgerStore, reseller: str, month: str) -> Iterator[str]:
    """The customers with a subscription row in the month before `month`, once each."""
    before = previous_month(month)
    last: str | None = None
    for row in every(
        lambda token: store.subscription_months(
            reseller, before, page_size=PAGE_SIZE, continuation_token=token
        )
    ):
        if row.customer_id != last and row.closing.live:
            last = row.customer_id
            yield last

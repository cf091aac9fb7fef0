"""The reconciliation: a subscription whose ledger row says otherwise gets its fact again.

A ledger message can be lost for good: it ends in `ledger-poison` after the host's retries,
while the record's `ledgered` digest, written in the record's own transaction, says its fact
was sent. `rebuild` replays the facts that arrived, so it cannot see the loss. This compares,
once a day, every subscription record of a reseller with the ledger's current month: a record
whose `PricedState` digest differs from its row's closing state (or that is live and has no
row) gets its fact again, through the same outbox path (the record rewritten unchanged,
If-Match, with the fact in its transaction: a record changed meanwhile was ledgered by that
change). A fact still on its way when this runs is sent twice, which changes no figure (the
later of two equal states wins).

Bounded: reseller by reseller (one's failure is logged and does not stop the others), customer
by customer, page by page; a month whose opening has not finished is skipped (its carried rows
are not all there yet). A fact the projector refuses (another currency) is sent, and refused
with an error naming it, every day until its price is corrected.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from shared.domain.customers import Customer
from shared.domain.ledger import PricedState, SubscriptionMonth, month_of
from shared.domain.subscriptions import Subscription
from shared.ports import Clock, LedgerStore, Repository
from shared.services.ledger.paging import PAGE_SIZE, every
from shared.services.ledger.writing import LedgeredSubscriptions

log = logging.getLogger(__name__)

# Records per page (Table Storage returns at most 1000).
_RECORDS_PAGE = 500


def reconcile(
    store: LedgerStore,
    clock: Clock,
    customers: Repository[Customer],
    subscriptions: LedgeredSubscriptions,
    resellers: Iterable[str],
) -> dict[str, int]:
    """Re-send the facts of every record the ledger's current month disagrees with; how many,
    per reseller reconciled (a reseller that failed is logged and left out)."""
    out: dict[str, int] = {}
    for reseller in resellers:
        try:
            out[reseller] = reconcile_reseller(store, clock, customers, subscriptions, reseller)
        except Exception:
            log.exception("ledger %s: reconciliation failed; the next run tries again", reseller)
    return out


def reconcile_reseller(
    store: LedgerStore,
    clock: Clock,
    customers: Repository[Customer],
    subscriptions: LedgeredSubscriptions,
    reseller: str,
) -> int:
    """One reseller's reconciliation (see the module's docstring); facts re-sent."""
    month = month_of(clock.now())
    if not store.opened(reseller, month):
        log.info("ledger %s %s not opened yet: reconciliation skipped", reseller, month)
        return 0
    sent = 0
    for customer in every(
        lambda token: customers.list(reseller, page_size=_RECORDS_PAGE, continuation_token=token)
    ):
        rows = {r.subscription_id: r for r in _rows(store, reseller, month, customer.id)}
        differ = [
            sub
            for sub in _records(subscriptions, customer.id)
            if sub.reseller == reseller and _differs(sub, rows.get(sub.id))
        ]
        if differ:
            log.warning(
                "ledger %s %s: %d subscription(s) of customer %s differ from their records; "
                "sending their facts again: %s",
                reseller,
                month,
                len(differ),
                customer.id,
                ", ".join(s.id for s in differ),
            )
            sent += subscriptions.resend(customer.id, differ)
    return sent


def _rows(
    store: LedgerStore, reseller: str, month: str, customer_id: str
) -> Iterator[SubscriptionMonth]:
    return every(
        lambda token: store.subscription_months(
            reseller, month, customer_id=customer_id, page_size=PAGE_SIZE, continuation_token=token
        )
    )


def _records(subscriptions: LedgeredSubscriptions, customer_id: str) -> Iterator[Subscription]:
    return every(
        lambda token: subscriptions.list(
            customer_id, page_size=_RECORDS_PAGE, continuation_token=token
        )
    )


def _differs(sub: Subscription, row: SubscriptionMonth | None) -> bool:
    """Whether the ledger's row (None: not in the month) disagrees with the record."""
    state = PricedState.of(sub)
    if row is None:
        return state.live
    return row.closing.digest() != state.digest()

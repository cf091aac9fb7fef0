"""What every `provision-order` step shares, purchases and subscription changes alike: saving
the order between Partner Center calls (with its ETag), waiting by re-enqueueing, and failing.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.domain.errors import ConcurrencyConflict
from shared.domain.failures import FailureKind
from shared.domain.orders import Order, OrderFailure, OrderStatus, ProvisionOrderMessage
from shared.domain.outbox import Queue
from shared.services.orders.book import SYSTEM, OrderBook, find_order
from shared.services.orders.completion import notify
from shared.services.subscriptions.pending import release

log = logging.getLogger(__name__)

# Past `max_polls`, work Partner Center accepted is checked this many times less often.
SLOW_POLL_FACTOR = 30
# How often a lost race on a record is re-read and tried again before giving up.
_RACE_TRIES = 5


class Saver:
    """Saves the order after each sub-step, keeping its ETag, and marks the boundary."""

    def __init__(self, book: OrderBook, order: Order) -> None:
        self.book, self.order = book, order

    def save(self, step: str) -> None:
        """Write the order (ConcurrencyConflict if it changed since read), then the boundary."""
        self.order.updated_at = self.book.clock.now()
        self.order = self.book.orders.update(self.order)
        boundary(self.book, step)


def boundary(book: OrderBook, step: str) -> None:
    """Tell the test hook a sub-step ended (tests stop the process there)."""
    if book.after_step is not None:
        book.after_step(step)


def step_body(order: Order, poll: int) -> dict[str, Any]:
    """The `provision-order` message resuming `order` after `poll` waits."""
    return {"reseller": order.reseller, "orderId": order.id, "poll": poll}


def superseded(book: OrderBook, order: Order, message: ProvisionOrderMessage) -> bool:
    """A slow check whose chain was replaced by a newer one (a watchdog nudge met a live
    chain: the older one stops)."""
    return message.poll >= book.policy.max_polls and message.poll < order.polls


def in_partner_center(order: Order) -> bool:
    """Partner Center took the order (placed it, or accepted or made its change): it is only
    ever checked again, never failed for being slow or for a step that kept crashing."""
    change = order.change
    return bool(order.partner_center_order_ids) or (
        change is not None
        and (
            change.applied
            or change.accepted_location is not None
            or change.transition_id is not None
        )
    )


def poll_again(
    book: OrderBook, saver: Saver, message: ProvisionOrderMessage, what: str, delay: float
) -> None:
    """Look again later at work Partner Center accepted and has not finished. It is never
    failed for taking long: past `max_polls` it is checked less often, by one chain of
    messages (the poll count saved on the order tells an older chain to stop)."""
    order = saver.order
    if message.poll >= book.policy.max_polls:
        log.warning(
            "Partner Center has not finished %s of %s/%s after %d checks",
            what,
            order.reseller,
            order.id,
            message.poll,
        )
        order.polls = message.poll + 1
        saver.save("slow-poll")
        delay *= SLOW_POLL_FACTOR
    book.scheduler.send_later(
        Queue.PROVISION_ORDER, step_body(saver.order, message.poll + 1), delay
    )
    boundary(book, "poll")


def fail(book: OrderBook, order: Order, kind: FailureKind, reason: str, detail: str | None) -> None:
    """Mark an order still in flight Failed with a reason (re-read on a lost race); a Change
    order also frees its subscription for the next change (after the order is saved: a crash
    between the two leaves a record naming a final order, which `pending.release` frees on
    the next delivery or the watchdog does)."""
    current: Order | None = order
    for _ in range(_RACE_TRIES):
        if current is None or current.status not in (
            OrderStatus.SUBMITTED,
            OrderStatus.PROVISIONING,
        ):
            return
        if current.cart_id is not None:
            # From the checkout on, Partner Center may have placed the order whatever it
            # answered: never a refusal, so a retry replays this cart and checkout request.
            kind = FailureKind.TRANSIENT
        current.failure = OrderFailure(kind=kind, reason=reason[:1000], detail=detail)
        current.move(OrderStatus.FAILED, book.clock.now(), SYSTEM, reason[:500])
        try:
            saved = book.orders.update(current)
        except ConcurrencyConflict:
            current = find_order(book, order.reseller, order.id)
            continue
        reseller = book.resellers.find("reseller", order.reseller)
        if reseller is not None:
            notify(book, reseller, saved)
        boundary(book, "failed")
        release(book, saved)
        return

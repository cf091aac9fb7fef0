"""Orders Submitted or Provisioning, as the watchdog (`services/watchdog.py`) sees them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from shared.domain.failures import Failure
from shared.domain.orders import TRANSIENT, OrderStatus
from shared.domain.outbox import OutboxMessage, Queue
from shared.services.orders.book import OrderBook, find_order
from shared.services.orders.provisioning import fail, slow_poll_body
from shared.services.orders.steps import in_partner_center
from shared.services.orders.submission import provision_message
from shared.services.watchdog import InFlight


class InFlightOrders:
    """Orders in flight: one Status-filtered query per transient status, across resellers
    (Table Storage filters server-side), so housekeeping never reads the orders at rest."""

    kind = "order"

    def __init__(self, book: OrderBook) -> None:
        self.book = book

    @property
    def deadline(self) -> timedelta:
        """How long a provisioning attempt may take before the watchdog acts."""
        return self.book.policy.stuck_after

    def in_flight(self) -> Iterator[InFlight]:
        """Every order Submitted or Provisioning, with the moments the watchdog decides by."""
        for status in (OrderStatus.SUBMITTED, OrderStatus.PROVISIONING):
            token: str | None = None
            while True:
                page = self.book.orders.list(
                    equals={"status": status}, page_size=1000, continuation_token=token
                )
                for o in page.items:
                    # One Partner Center placed is never failed here: stale, it is only ever
                    # re-enqueued (and counted stale until it finishes).
                    yield InFlight(
                        kind=self.kind,
                        partition=o.reseller,
                        id=o.id,
                        status=o.status.value,
                        since=o.status_since,
                        nudged_at=None if in_partner_center(o) else o.nudged_at,
                    )
                token = page.continuation_token
                if token is None:
                    break

    def nudge(self, item: InFlight) -> None:
        """Re-enqueue `provision-order` (through the outbox), with the stored request ids: once
        for an order not yet placed; for one Partner Center placed, its slow checks, at most
        once a deadline."""
        order = find_order(self.book, item.partition, item.id)
        if order is None or order.status not in TRANSIENT:
            return
        now = self.book.clock.now()
        if in_partner_center(order):
            if order.nudged_at is not None and now - order.nudged_at < self.deadline:
                return
            message = OutboxMessage(
                queue=Queue.PROVISION_ORDER, body=slow_poll_body(self.book, order)
            )
        elif order.nudged_at is not None:
            return
        else:
            message = provision_message(order)
        order.nudged_at = now
        self.book.orders.update(order, messages=[message])

    def fail(self, item: InFlight, failure: Failure) -> None:
        """Mark the order Failed with the failure (if it is still in flight and Partner Center
        has not placed it; a placed one is re-enqueued instead)."""
        order = find_order(self.book, item.partition, item.id)
        if order is None:
            return
        if in_partner_center(order):
            self.nudge(item)
            return
        fail(self.book, order, failure.kind, failure.reason, None)

"""In-memory Partner Center ordering (with the simulator's replay rules) and order helpers."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain.catalog import MicrosoftSegment, Product
from shared.domain.customers import Customer
from shared.domain.errors import NotFound, UpstreamRejected
from shared.domain.orders import (
    CartLineRequest,
    CartRef,
    CheckoutResult,
    Order,
    OrderGroupError,
    OrderProvisioning,
    PlacedOrder,
    PlacedOrderLine,
    order_row_key,
)
from shared.domain.outbox import Queue
from shared.domain.subscriptions import Subscription, SubscriptionFacts
from shared.services.orders import OrderBook, OrderPolicy
from tests.fakes import InMemoryRepository


class FakeScheduler:
    """Records delayed messages instead of sending them."""

    def __init__(self) -> None:
        self.sent: list[tuple[Queue, dict[str, Any], float]] = []

    def send_later(self, queue: Queue, body: Mapping[str, Any], delay_seconds: float) -> None:
        """Remember the message."""
        self.sent.append((queue, dict(body), delay_seconds))


@dataclass
class _Cart:
    id: str
    tenant: str
    lines: list[CartLineRequest]
    ordered: bool = False


@dataclass
class FakeOrderPartnerCenter:
    """The ordering half of the PartnerCenter port, like the simulator: a repeated MS-RequestId
    repeats the first answer; a second checkout of a cart under a new id is refused (800065);
    orders provision after `provisioning_polls` status reads; `seat_caps` refuses a group
    (10015) whose quantity is above the seats left."""

    provisioning_polls: int = 0
    seat_caps: dict[str, int] = field(default_factory=dict)
    fail_next: list[Exception] = field(default_factory=list)
    carts: dict[str, _Cart] = field(default_factory=dict)
    orders: dict[str, tuple[str, PlacedOrder]] = field(default_factory=dict)
    subscriptions: dict[str, SubscriptionFacts] = field(default_factory=dict)
    replies: dict[str, Any] = field(default_factory=dict)
    polls: dict[str, int] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    fallback: Any = None
    clock: Any = None  # orders are stamped with the test's clock when given
    # Checkout answers without subscription ids (provisioning is asynchronous): a GET of the
    # order has them once provisioned, unless `never_subscribed` (Partner Center lost them).
    late_subscription_ids: bool = False
    cart_line_errors: dict[int, str] = field(default_factory=dict)  # answered on cart lines
    never_subscribed: bool = False

    def __getattr__(self, name: str) -> Any:
        if self.fallback is None:
            raise AttributeError(name)
        return getattr(self.fallback, name)

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.fail_next:
            raise self.fail_next.pop(0)

    def place_cart(
        self, customer_tenant: str, lines: Sequence[CartLineRequest], *, request_id: str
    ) -> CartRef:
        """A cart (replayed for a repeated request id)."""
        self._call("place_cart")
        key = f"cart {request_id}"
        if key not in self.replies:
            cart = _Cart(str(uuid.uuid4()), customer_tenant, list(lines))
            self.carts[cart.id] = cart
            self.replies[key] = CartRef(id=cart.id, line_errors=dict(self.cart_line_errors))
        reply: CartRef = self.replies[key]
        return reply

    def check_out(self, customer_tenant: str, cart_id: str, *, request_id: str) -> CheckoutResult:
        """Orders per order group (replayed for a repeated request id)."""
        self._call("check_out")
        key = f"checkout {request_id}"
        if key in self.replies:
            reply: CheckoutResult = self.replies[key]
            return reply
        cart = self.carts[cart_id]
        if cart.ordered:
            raise UpstreamRejected("The cart has already been submitted.", code="800065")
        groups: dict[str, list[CartLineRequest]] = {}
        for line in cart.lines:
            groups.setdefault(line.order_group, []).append(line)
        placed, errors = [], []
        for group, lines in groups.items():
            refused = next(
                (
                    line
                    for line in lines
                    if line.catalog_item_id in self.seat_caps
                    and line.quantity > self.seat_caps[line.catalog_item_id]
                ),
                None,
            )
            if refused is not None:
                errors.append(
                    OrderGroupError(
                        group,
                        "10015",
                        "Quantity out of range",
                        self.seat_caps[refused.catalog_item_id],
                    )
                )
                continue
            order_id = str(uuid.uuid4())
            now = self.clock.now() if self.clock is not None else datetime.now(UTC)
            order_lines = []
            for n, line in enumerate(lines):
                sid = str(uuid.uuid4())
                self.subscriptions[sid] = SubscriptionFacts(
                    id=sid,
                    catalog_item_id=line.catalog_item_id,
                    name=line.friendly_name or line.catalog_item_id,
                    quantity=line.quantity,
                    term_duration=line.term_duration,
                    billing_cycle=line.billing_cycle,
                    status="active",
                    start_date=now,
                    commitment_end_date=now + timedelta(days=365),
                    cancellation_allowed_until=now + timedelta(days=7),
                    auto_renew=True,
                    is_trial=False,
                    order_id=order_id,
                    parent_subscription_id=None,
                )
                order_lines.append(PlacedOrderLine(n, line.catalog_item_id, line.quantity, sid))
            order = PlacedOrder(order_id, now, tuple(order_lines))
            self.orders[order_id] = (customer_tenant, order)
            placed.append(order)
        cart.ordered = True
        if self.late_subscription_ids:
            placed = [
                PlacedOrder(
                    o.id,
                    o.created_at,
                    tuple(
                        PlacedOrderLine(li.number, li.catalog_item_id, li.quantity, None)
                        for li in o.lines
                    ),
                )
                for o in placed
            ]
        result = CheckoutResult(tuple(placed), tuple(errors))
        self.replies[key] = result
        return result

    def placed_orders(self, customer_tenant: str) -> list[PlacedOrder]:
        """Every order of a tenant."""
        self._call("placed_orders")
        return [o for t, o in self.orders.values() if t == customer_tenant]

    def placed_order(self, customer_tenant: str, order_id: str) -> PlacedOrder:
        """One order; its subscription ids only once it has provisioned."""
        self._call("placed_order")
        tenant, order = self.orders[order_id]
        if tenant != customer_tenant:
            raise NotFound(f"order {order_id} was not found")
        provisioned = self.polls.get(order_id, 0) > self.provisioning_polls
        if self.never_subscribed or (self.late_subscription_ids and not provisioned):
            lines = tuple(
                PlacedOrderLine(li.number, li.catalog_item_id, li.quantity, None)
                for li in order.lines
            )
            return PlacedOrder(order.id, order.created_at, lines)
        return order

    def order_provisioning(self, customer_tenant: str, order_id: str) -> OrderProvisioning:
        """Done after `provisioning_polls` reads."""
        self._call("order_provisioning")
        self.polls[order_id] = self.polls.get(order_id, 0) + 1
        return OrderProvisioning(order_id, self.polls[order_id] > self.provisioning_polls)

    def subscription_facts(self, customer_tenant: str) -> list[SubscriptionFacts]:
        """Every subscription placed (one tenant per test is enough)."""
        self._call("subscription_facts")
        return list(self.subscriptions.values())


def install_orders(c: Any, partner_center: Any = None) -> OrderBook:
    """Orders and subscriptions in memory, a fake scheduler and ordering Partner Center on `c`."""
    pc = FakeOrderPartnerCenter(
        fallback=partner_center or c.__dict__.get("partner_center"), clock=c.clock
    )
    orders = InMemoryRepository[Order](lambda o: (o.reseller, order_row_key(o.id)))
    subs = InMemoryRepository[Subscription](lambda s: (s.customer_id, s.id.lower()))
    book = OrderBook(
        orders=orders,
        subscriptions=subs,
        customers=c.customers,
        resellers=c.resellers,
        catalog=c.catalog_reader,
        clock=c.clock,
        scheduler=FakeScheduler(),
        notifications=c.notifications,
        users=c.users,
        policy=OrderPolicy(poll_seconds=1, customer_wait_seconds=2, max_polls=5),
    )
    c.__dict__.update(orders=orders, subscriptions=subs, order_book=book, partner_center=pc)
    return book


def offer_line(
    products: Any, customer: Customer, product: Product, *, segment: str | None = None, **extra: Any
) -> dict[str, Any]:
    """A valid order line (camelCase) for `customer` of `product`'s first paid SKU."""
    wanted = segment or (
        customer.segment if customer.segment in set(MicrosoftSegment) else "commercial"
    )
    for sku in product.skus:
        if sku.is_trial:
            continue
        availability = sku.availability(wanted)
        if availability is None or not availability.terms:
            continue
        term = availability.terms[0]
        return {
            "catalogItemId": availability.catalog_item_id,
            "quantity": max(sku.minimum_quantity, 1),
            "termDuration": term.duration,
            "billingCycle": term.billing_cycle,
            **extra,
        }
    raise AssertionError(f"{product.id} has no paid offer in {wanted}")

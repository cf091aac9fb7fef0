"""In-memory Partner Center ordering (with the simulator's replay rules) and order helpers."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain.catalog import MicrosoftSegment, Product
from shared.domain.customers import Customer
from shared.domain.errors import (
    ConcurrencyConflict,
    NotFound,
    UpstreamRejected,
    UpstreamUnavailable,
)
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
from shared.domain.subscriptions import (
    ChangeAccepted,
    ChangeProgress,
    LicenceCount,
    RefundableSeats,
    Subscription,
    SubscriptionChange,
    SubscriptionFacts,
    TransitionOption,
    TransitionOutcome,
    TransitionRequest,
)
from shared.services.orders import OrderBook, OrderPolicy
from tests.fakes import InMemoryRepository


class FakeScheduler:
    """Records delayed messages instead of sending them."""

    def __init__(self) -> None:
        self.sent: list[tuple[Queue, dict[str, Any], float]] = []

    def send_later(self, queue: Queue, body: Mapping[str, Any], delay_seconds: float) -> None:
        """Remember the message."""
        self.sent.append((queue, dict(body), delay_seconds))


# Answers the simulator keeps for their MS-RequestId (below 500) and replays for a repeat.
_KEPT_ANSWERS = (UpstreamRejected, UpstreamUnavailable, ConcurrencyConflict, NotFound)


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
    # Subscription changes, like the simulator: each increase opens its own 7-day window;
    # decrease beyond the open windows → 800090, cancel after the window → 900213, anything
    # but reactivation while suspended → 800091; a stale ETag → ConcurrencyConflict.
    accept_next_changes: int = 0  # the next N changes answer 202 (ChangeAccepted)
    accepted_polls: int = 1  # reads of a 202's Location before it is done
    # (code, words): Partner Center's refusal of the next change ("412": a lost ETag race,
    # "800082"/"900278": not now → UpstreamUnavailable, others → UpstreamRejected).
    refuse_next_change: list[tuple[str, str]] = field(default_factory=list)
    assigned: dict[str, int] = field(default_factory=dict)  # subscription id → licences
    transition_targets: dict[str, list[TransitionOption]] = field(default_factory=dict)
    applied_changes: list[tuple[str, SubscriptionChange]] = field(default_factory=list)
    _accepted: dict[str, tuple[str, SubscriptionChange, int]] = field(default_factory=dict)
    _versions: dict[str, int] = field(default_factory=dict)

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
                    refundable=(RefundableSeats(line.quantity, now + timedelta(days=7)),),
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
        return [self._facts(sid) for sid in self.subscriptions]

    # --- subscriptions in our words ---------------------------------------------------------

    def _now(self) -> datetime:
        return self.clock.now() if self.clock is not None else datetime.now(UTC)

    def _facts(self, subscription_id: str) -> SubscriptionFacts:
        facts = self.subscriptions.get(subscription_id)
        if facts is None:
            raise NotFound(f"subscription {subscription_id} was not found")
        now = self._now()
        refundable = tuple(r for r in facts.refundable if r.until > now)
        etag = f'W/"{self._versions.get(subscription_id, 1)}"'
        return replace(facts, refundable=refundable, etag=etag)

    def add_subscription(self, facts: SubscriptionFacts) -> SubscriptionFacts:
        """Put a subscription in place (as if bought earlier)."""
        self.subscriptions[facts.id] = facts
        return self._facts(facts.id)

    def subscription(self, customer_tenant: str, subscription_id: str) -> SubscriptionFacts:
        """One subscription as it is now (NotFound if unknown)."""
        self._call("subscription")
        return self._facts(subscription_id)

    def change_subscription(
        self,
        customer_tenant: str,
        subscription_id: str,
        change: SubscriptionChange,
        *,
        request_id: str,
    ) -> SubscriptionFacts | ChangeAccepted:
        """Apply a change (replayed for a repeated request id); 202 on demand."""
        self._call("change_subscription")
        key = f"change {request_id}"
        if key not in self.replies:
            try:
                self.replies[key] = self._change(subscription_id, change)
            except _KEPT_ANSWERS as answer:
                self.replies[key] = answer
        return self._replayed(key)  # type: ignore[no-any-return]

    def _replayed(self, key: str) -> Any:
        """The first answer to a request id: the simulator keeps every answer below 500 (a
        refusal, a 409 "not now", a 412 lost ETag race) and gives it back for a repeat."""
        reply = self.replies[key]
        if isinstance(reply, Exception):
            raise reply
        return reply

    def _change(
        self, subscription_id: str, change: SubscriptionChange
    ) -> SubscriptionFacts | ChangeAccepted:
        current = self._facts(subscription_id)
        if self.refuse_next_change:
            code, words = self.refuse_next_change.pop(0)
            if code == "412":  # changed by someone else between the read and the write
                raise ConcurrencyConflict(words)
            if code in ("800082", "900278"):
                raise UpstreamUnavailable(f"{words} ({code})", retry_after=300, code=code)
            raise UpstreamRejected(words, code=code, status=400)
        self._check_change(current, change)
        if self.accept_next_changes > 0:
            self.accept_next_changes -= 1
            location = f"/v1/operations/{uuid.uuid4()}"
            self._accepted[location] = (subscription_id, change, 0)
            return ChangeAccepted(location=location, retry_after_seconds=1)
        return self._apply(subscription_id, change)

    def _check_change(self, current: SubscriptionFacts, change: SubscriptionChange) -> None:
        now = self._now()
        status = current.status.lower()
        if status in ("cancelled", "expired", "disabled"):
            raise UpstreamRejected(f"A subscription in status {status} cannot be changed.", "2011")
        if change.status is not None and change.status.lower() == "cancelled":
            if (
                current.cancellation_allowed_until is None
                or now > current.cancellation_allowed_until
            ):
                raise UpstreamRejected(
                    "You have passed your 168-hour cancellation window. "
                    "We are unable to cancel your purchase",
                    code="900213",
                    status=400,
                )
            return
        if status == "suspended" and (
            change.quantity is not None
            or change.billing_cycle is not None
            or change.term_duration is not None
            or change.next_term is not None
        ):
            raise UpstreamRejected(
                "Can't update a subscription with suspended status", code="800091", status=400
            )
        if change.quantity is not None and change.quantity < current.quantity:
            removable = sum(r.quantity for r in current.refundable)
            if current.quantity - change.quantity > removable:
                raise UpstreamRejected(
                    "Subscription quantity cannot be decreased.", code="800090", status=400
                )

    def _apply(self, subscription_id: str, change: SubscriptionChange) -> SubscriptionFacts:
        current = self._facts(subscription_id)
        now = self._now()
        refundable = list(current.refundable)
        next_term = current.next_term
        quantity = current.quantity
        if change.quantity is not None and change.quantity != quantity:
            delta = change.quantity - quantity
            if delta > 0:
                refundable.append(RefundableSeats(delta, now + timedelta(hours=168)))
            else:
                left = -delta
                kept = []
                for seats in sorted(refundable, key=lambda r: r.until):
                    take = min(seats.quantity, left)
                    left -= take
                    if seats.quantity - take:
                        kept.append(RefundableSeats(seats.quantity - take, seats.until))
                refundable = kept
            quantity = change.quantity
            next_term = None  # a mid-term change wipes the scheduled one
        status = current.status
        auto_renew = current.auto_renew if change.auto_renew is None else change.auto_renew
        if change.status is not None:
            status = change.status
            if status.lower() in ("suspended", "cancelled"):
                auto_renew, next_term = False, None
        if not auto_renew:
            next_term = None
        if change.clear_next_term:
            next_term = None
        elif change.next_term is not None:
            next_term = change.next_term
        facts = replace(
            current,
            quantity=quantity,
            status=status,
            auto_renew=auto_renew,
            billing_cycle=change.billing_cycle or current.billing_cycle,
            term_duration=change.term_duration or current.term_duration,
            refundable=tuple(refundable),
            next_term=next_term,
        )
        self.subscriptions[subscription_id] = facts
        self._versions[subscription_id] = self._versions.get(subscription_id, 1) + 1
        self.applied_changes.append((subscription_id, change))
        return self._facts(subscription_id)

    def change_progress(
        self, customer_tenant: str, subscription_id: str, accepted: ChangeAccepted
    ) -> ChangeProgress:
        """Running until `accepted_polls` reads, then done with the subscription as it is."""
        self._call("change_progress")
        if accepted.location not in self._accepted:
            raise NotFound(f"operation {accepted.location} was not found")
        sid, change, polls = self._accepted[accepted.location]
        polls += 1
        self._accepted[accepted.location] = (sid, change, polls)
        if polls < self.accepted_polls:
            return ChangeProgress(done=False, retry_after_seconds=1)
        if polls == self.accepted_polls:
            try:
                self._check_change(self._facts(sid), change)
            except UpstreamRejected as refused:
                return ChangeProgress(
                    done=True, failed_code=refused.code, failed_reason=refused.detail
                )
            self._apply(sid, change)
        return ChangeProgress(done=True, facts=self._facts(sid))

    def licence_counts(self, customer_tenant: str) -> list[LicenceCount]:
        """One count per catalog item (the SKU id is the catalog item's product:sku)."""
        self._call("licence_counts")
        counts: dict[str, LicenceCount] = {}
        for sid, facts in self.subscriptions.items():
            if facts.status.lower() not in ("active", "suspended") or not facts.catalog_item_id:
                continue
            sku = ":".join(facts.catalog_item_id.split(":")[:2])
            seen = counts.get(sku) or LicenceCount(sku, facts.name, 0, 0, 0, 0, sku)
            active = facts.quantity if facts.status.lower() == "active" else 0
            counts[sku] = LicenceCount(
                sku,
                facts.name,
                seen.assigned + self.assigned.get(sid, 0),
                seen.total + facts.quantity,
                seen.active + active,
                seen.suspended + facts.quantity - active,
                sku,
            )
        return list(counts.values())

    def transition_options(
        self, customer_tenant: str, subscription_id: str, *, scheduled: bool = False
    ) -> list[TransitionOption]:
        """The targets set in `transition_targets` (a trial: its paid catalog item)."""
        self._call("transition_options")
        facts = self._facts(subscription_id)
        if subscription_id in self.transition_targets:
            return list(self.transition_targets[subscription_id])
        if facts.is_trial and facts.catalog_item_id:
            product = facts.catalog_item_id.split(":")[0]
            return [TransitionOption(f"{product}:0001:PAID", facts.name, True)]
        return []

    def transition(
        self,
        customer_tenant: str,
        subscription_id: str,
        request: TransitionRequest,
        *,
        request_id: str,
    ) -> TransitionOutcome:
        """Convert or upgrade (replayed for a repeated request id); ineligible → rejected."""
        self._call("transition")
        key = f"transition {request_id}"
        if key not in self.replies:
            try:
                self.replies[key] = self._transition(customer_tenant, subscription_id, request)
            except _KEPT_ANSWERS as answer:
                self.replies[key] = answer
        return self._replayed(key)  # type: ignore[no-any-return]

    def _transition(
        self, customer_tenant: str, subscription_id: str, request: TransitionRequest
    ) -> TransitionOutcome:
        options = {
            o.catalog_item_id.upper(): o
            for o in self.transition_options(customer_tenant, subscription_id)
        }
        option = options.get(request.to_catalog_item_id.upper())
        if option is None or not option.eligible:
            words = option.reasons[0] if option and option.reasons else None
            raise UpstreamRejected(
                words or f"{request.to_catalog_item_id} is not an eligible transition target.",
                code="800092" if option else "10001",
                status=400,
            )
        source = self._facts(subscription_id)
        now = self._now()
        new_id = str(uuid.uuid4())
        self.subscriptions[new_id] = replace(
            source,
            id=new_id,
            catalog_item_id=request.to_catalog_item_id.upper(),
            quantity=request.quantity,
            term_duration=request.term_duration or source.term_duration,
            billing_cycle=request.billing_cycle or source.billing_cycle,
            is_trial=False,
            trial_ends=None,
            start_date=now,
            cancellation_allowed_until=(now + timedelta(hours=168)) if source.is_trial else None,
            refundable=(),
            next_term=None,
        )
        left = source.quantity - request.quantity
        self.subscriptions[subscription_id] = replace(
            source,
            quantity=max(left, 0) if not source.is_trial else source.quantity,
            status="Cancelled" if source.is_trial or left <= 0 else source.status,
            next_term=None,
        )
        self._versions[subscription_id] = self._versions.get(subscription_id, 1) + 1
        return TransitionOutcome("Completed", new_id, str(uuid.uuid4()))


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

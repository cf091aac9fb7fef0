"""In-memory Partner Center ordering (with the simulator's replay rules) and order helpers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.adapters.partner_center.audit import readable_start
from shared.adapters.partner_center.subscriptions import our_status
from shared.domain.catalog import MicrosoftSegment, Product
from shared.domain.customers import Customer, Qualification, Tenant
from shared.domain.errors import (
    ConcurrencyConflict,
    FieldError,
    NotFound,
    UpstreamRejected,
    UpstreamUnavailable,
    ValidationFailed,
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
    NextTerm,
    RefundableSeats,
    Subscription,
    SubscriptionChange,
    SubscriptionFacts,
    TransitionOption,
    TransitionOutcome,
    TransitionRequest,
)
from shared.domain.sync import AuditEvent
from shared.services.orders import OrderBook, OrderPolicy
from tests.fakes import KNOWN_RESELLERS, InMemoryRepository


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
    """The ordering and subscription halves of the PartnerCenter port, like the simulator
    behind the real adapter (the one fake of them: tests set its knobs, never subclass it).

    Ordering: a repeated MS-RequestId repeats the first answer; a second checkout of a cart
    under a new id is refused (800065); orders provision after `provisioning_polls` status
    reads; `seat_caps` refuses a group (10015) whose quantity is above the seats left.
    Subscriptions: see the section below; the rest of the port goes to `fallback`.
    Audit: every write Partner Center audits is kept as an `AuditEvent` (`audit`), as the
    simulator writes its records: add_customer, create_order, update_subscription,
    upgrade_subscription / convert_trial_subscription, update_customer_qualification; renewals
    and expiry leave none."""

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
    accepted_polls: int = 1  # reads of a 202's Location until it is done (done on the Nth)
    accepted_retry_after: float = 1  # the 202's Retry-After
    # An accepted change ends failed with this (code, words) instead of being applied.
    accepted_failure: tuple[str, str] | None = None
    # (code, words): Partner Center's refusal of the next change ("412": a lost ETag race,
    # "800082"/"900278": not now → UpstreamUnavailable, others → UpstreamRejected).
    refuse_next_change: list[tuple[str, str]] = field(default_factory=list)
    assigned: dict[str, int] = field(default_factory=dict)  # subscription id → licences
    transition_targets: dict[str, list[TransitionOption]] = field(default_factory=dict)
    # The next N transitions answer Started (the seats not moved yet, as the simulator's
    # `asyncTransitionNext`); each ends on its `transition_polls`-th read, Failed with
    # `transition_failure` when set (no seats moved), else Completed.
    start_next_transitions: int = 0
    transition_polls: int = 1
    transition_failure: str | None = None
    applied_changes: list[tuple[str, SubscriptionChange]] = field(default_factory=list)
    # (request id, subscription id) of every write Partner Center took: a change (applied or
    # accepted for later) or a transition; never a replay nor a refusal.
    changes: list[tuple[str, str]] = field(default_factory=list)
    _accepted: dict[str, tuple[str, SubscriptionChange, int]] = field(default_factory=dict)
    _failures: dict[str, tuple[str, str]] = field(default_factory=dict)
    # transition id → (subscription id, request, request id, reads so far, its end if ended)
    _started: dict[str, tuple[str, TransitionRequest, str, int, TransitionOutcome | None]] = field(
        default_factory=dict
    )
    _versions: dict[str, int] = field(default_factory=dict)
    audit: list[AuditEvent] = field(default_factory=list)
    qualifications: dict[tuple[str, str], Qualification] = field(default_factory=dict)
    tenant_of: dict[str, str] = field(default_factory=dict)  # subscription id → its tenant

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
            placed.append(self._new_order(customer_tenant, lines))
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

    def _new_order(self, customer_tenant: str, lines: Sequence[CartLineRequest]) -> PlacedOrder:
        """An order with a new subscription per line, and its create_order audit event."""
        order_id = str(uuid.uuid4())
        now = self._now()
        order_lines = []
        for n, line in enumerate(lines):
            sid = str(uuid.uuid4())
            self.tenant_of[sid] = customer_tenant
            self._store(
                SubscriptionFacts(
                    id=sid,
                    catalog_item_id=line.catalog_item_id,
                    name=line.friendly_name or line.catalog_item_id,
                    quantity=line.quantity,
                    term_duration=line.term_duration,
                    billing_cycle=line.billing_cycle,
                    status="Active",
                    start_date=now,
                    commitment_end_date=now + timedelta(days=365),
                    cancellation_allowed_until=now + timedelta(days=7),
                    refundable=(RefundableSeats(line.quantity, now + timedelta(days=7)),),
                    auto_renew=True,
                    is_trial=False,
                    order_id=order_id,
                    parent_subscription_id=None,
                    partner_id=self._reseller_of_record(customer_tenant, line.reseller_mpn_id),
                )
            )
            order_lines.append(PlacedOrderLine(n, line.catalog_item_id, line.quantity, sid))
        order = PlacedOrder(order_id, now, tuple(order_lines))
        self.orders[order_id] = (customer_tenant, order)
        self._audit(customer_tenant, "order", "create_order", order_id)
        return order

    # --- audit records, qualifications, and what happens outside the platform ----------------

    def _audit(self, tenant: str | None, resource_type: str, operation: str, resource: str) -> None:
        self.audit.append(
            AuditEvent(
                id=str(uuid.uuid4()),
                at=self._now(),
                customer_tenant_id=tenant.lower() if tenant else None,
                resource_type=resource_type,
                operation=operation,
                resource_id=resource.lower(),
            )
        )

    def audit_events(self, since: datetime, until: datetime) -> Iterator[AuditEvent]:
        """The audit events of [since, until), oldest first; like the client, a start older
        than the 90 days Partner Center keeps is moved up (events before it are gone)."""
        self._call("audit_events")
        start = readable_start(since, until)
        found = [e for e in self.audit if start <= e.at < until]
        return iter(sorted(found, key=lambda e: e.at))

    def customer_qualification(self, customer_tenant: str, segment: str) -> Qualification:
        """None until `set_qualification`; NotFound for a tenant the customer fake doesn't hold."""
        self._call("customer_qualification")
        tenants = getattr(self.fallback, "tenants", None)
        if isinstance(tenants, dict) and customer_tenant not in tenants:
            raise NotFound(f"customer {customer_tenant}")
        return self.qualifications.get((customer_tenant, segment.lower()), Qualification.NONE)

    def set_qualification(self, customer_tenant: str, segment: str, status: Qualification) -> None:
        """Microsoft's vetting moved on (an update_customer_qualification record)."""
        self.qualifications[(customer_tenant, segment.lower())] = status
        self._audit(customer_tenant, "customer", "update_customer_qualification", customer_tenant)

    def accept_reseller(
        self, reseller_tenant_id: str, domain: str, company_name: str | None = None, **fields: Any
    ) -> Tenant:
        """A tenant that existed before accepts the reseller: the customer fake (`fallback`)
        lists it, with an add_customer audit event."""
        tenant: Tenant = self.fallback.add_tenant(
            reseller_tenant_id, domain, company_name, **fields
        )
        self._audit(tenant.id, "customer", "add_customer", tenant.id)
        return tenant

    def _reseller_of_record(self, customer_tenant: str, line_mpn_id: str) -> str | None:
        """The line's transaction reseller; for an order placed in Partner Center's UI, the
        MPN id of the reseller the tenant is associated with (None if none), as the simulator."""
        if line_mpn_id:
            return line_mpn_id
        tenant = getattr(self.fallback, "tenants", {}).get(customer_tenant)
        owner = (tenant.associated_partner_id or "").lower() if tenant is not None else ""
        return next((r.mpn_id for r in KNOWN_RESELLERS if r.tenant_id.lower() == owner), None)

    def place_order_outside(
        self,
        customer_tenant: str,
        catalog_item_id: str,
        quantity: int = 1,
        term_duration: str = "P1Y",
        billing_cycle: str = "monthly",
        reseller_mpn_id: str = "",
    ) -> PlacedOrder:
        """An order placed in Partner Center's own UI: its subscription and audit event."""
        line = CartLineRequest(
            catalog_item_id=catalog_item_id,
            quantity=quantity,
            term_duration=term_duration,
            billing_cycle=billing_cycle,
            reseller_mpn_id=reseller_mpn_id,
        )
        return self._new_order(customer_tenant, [line])

    def expire(self, subscription_id: str) -> SubscriptionFacts:
        """Microsoft ended the term without renewal (auto-renew off): Expired, no audit event."""
        current = self.subscriptions[subscription_id]
        self._store(replace(current, status="Expired", auto_renew=False, next_term=None))
        return self._facts(subscription_id)

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
        # A subscription put in place without a tenant belongs to whichever tenant is asked.
        return [
            self._facts(sid)
            for sid in self.subscriptions
            if self.tenant_of.get(sid, customer_tenant) == customer_tenant
        ]

    # --- subscriptions in our words ---------------------------------------------------------
    # Like the simulator behind the real adapter: statuses in our words (`deleted` →
    # `Cancelled`); each change is checked against the NCE rules, then applied, the ETag moving
    # on; a repeated MS-RequestId repeats the first answer, a refusal by those rules included
    # (the simulator keeps every answer below 500). What the knobs inject (`fail_next`,
    # `refuse_next_change`) is a fault in front of Partner Center, as the simulator's fault
    # rules are: never kept for a replay.

    def _now(self) -> datetime:
        return self.clock.now() if self.clock is not None else datetime.now(UTC)

    def _facts(self, subscription_id: str) -> SubscriptionFacts:
        facts = self.subscriptions.get(subscription_id)
        if facts is None:
            raise NotFound(f"subscription {subscription_id} was not found")
        now = self._now()
        refundable = tuple(r for r in facts.refundable if r.until > now)
        etag = f'W/"{self._versions.get(subscription_id, 1)}"'
        return replace(facts, status=our_status(facts.status), refundable=refundable, etag=etag)

    def _store(self, facts: SubscriptionFacts) -> None:
        """Keep a subscription in our words; its ETag moves on."""
        known = facts.id in self.subscriptions
        self._versions[facts.id] = self._versions.get(facts.id, 1 if known else 0) + 1
        self.subscriptions[facts.id] = replace(facts, status=our_status(facts.status), etag=None)

    def add_subscription(
        self, facts: SubscriptionFacts, *, tenant: str | None = None
    ) -> SubscriptionFacts:
        """Put a subscription in place (as if bought earlier; no audit event)."""
        if tenant is not None:
            self.tenant_of[facts.id] = tenant
        self._store(facts)
        return self._facts(facts.id)

    def subscription(self, customer_tenant: str, subscription_id: str) -> SubscriptionFacts:
        """One subscription as it is now (NotFound if unknown)."""
        self._call("subscription")
        return self._facts(subscription_id)

    def _replayed(self, key: str) -> Any:
        """The first answer to a request id (a kept refusal is raised again), or None."""
        reply = self.replies.get(key)
        if isinstance(reply, Exception):
            raise reply
        return reply

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
        current = self._facts(subscription_id)  # the adapter's GET before its PATCH
        if change.status is not None and change.status.lower() not in _OUR_CHANGE_STATUSES:
            raise ValidationFailed([FieldError("status", "must be Active, Suspended or Cancelled")])
        key = f"change {request_id}"
        if key in self.replies:
            replayed: SubscriptionFacts | ChangeAccepted = self._replayed(key)
            return replayed
        if self.refuse_next_change:
            # Partner Center's own answers (a lost ETag race, "not now", a refusal): the
            # simulator keeps each one for its MS-RequestId and replays it for a repeat.
            code, words = self.refuse_next_change.pop(0)
            answer: Exception
            if code == "412":  # changed by someone else between the read and the write
                answer = ConcurrencyConflict(words)
            elif code in ("800082", "900278"):
                answer = UpstreamUnavailable(f"{words} ({code})", retry_after=300, code=code)
            else:
                answer = UpstreamRejected(words, code=code, status=400)
            self.replies[key] = answer
            raise answer
        later = self.accept_next_changes > 0  # counted down before the rules, as the simulator
        if later:
            self.accept_next_changes -= 1
        try:
            self._check_change(current, change)
        except UpstreamRejected as refused:
            self.replies[key] = refused
            raise
        self.changes.append((request_id, subscription_id))
        if later:
            location = f"/v1/operations/{uuid.uuid4()}"
            self._accepted[location] = (subscription_id, change, 0)
            accepted = ChangeAccepted(
                location=location, retry_after_seconds=self.accepted_retry_after
            )
            self.replies[key] = accepted
            return accepted
        facts = self._apply(subscription_id, change)
        self.replies[key] = facts
        return facts

    def _check_change(self, current: SubscriptionFacts, change: SubscriptionChange) -> None:
        """The simulator's PATCH rules (localdev/partner_center_sim/rules.py), in our words."""
        now = self._now()
        status = current.status.lower()
        wanted = _wanted(current, change)
        if not wanted:
            return
        if status in ("cancelled", "expired", "disabled"):
            raise UpstreamRejected(
                f"A subscription in status {status} cannot be changed.", "800092", 400
            )
        if current.is_trial and wanted & {"quantity", "status", "billing_cycle", "term_duration"}:
            raise UpstreamRejected(
                "The quantity and status of a trial subscription cannot be changed.", "800092", 400
            )
        if status == "suspended" and wanted - {"status"}:
            raise UpstreamRejected(
                "Can't update a subscription with suspended status", code="800091", status=400
            )
        if "status" in wanted and (change.status or "").lower() == "cancelled":
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
        if change.quantity is not None and change.quantity < current.quantity:
            removable = sum(r.quantity for r in current.refundable)
            if current.quantity - change.quantity > removable:
                raise UpstreamRejected(
                    "Subscription quantity cannot be decreased.", code="800090", status=400
                )
        if "term_duration" in wanted and _TERM_ORDER.get(change.term_duration or "", 0) <= (
            _TERM_ORDER.get(current.term_duration or "", 0)
        ):
            raise UpstreamRejected(
                "The term can only be extended mid-term; shorter terms apply at renewal.",
                "800092",
                400,
            )
        new_status = (change.status or current.status).lower()
        auto_renew = current.auto_renew if change.auto_renew is None else change.auto_renew
        if (
            "next_term" in wanted
            and change.next_term is not None
            and (new_status != "active" or not auto_renew)
        ):
            raise UpstreamRejected(
                "Scheduled changes need an active subscription with auto-renew on.",
                "800093",
                400,
            )
        if "auto_renew" in wanted and auto_renew and new_status != "active":
            raise UpstreamRejected(
                "Auto-renew can only be turned on for an active subscription.", "800092", 400
            )

    def _apply(self, subscription_id: str, change: SubscriptionChange) -> SubscriptionFacts:
        current = self._facts(subscription_id)
        tenant = self.tenant_of.get(subscription_id)
        self._audit(tenant, "subscription", "update_subscription", subscription_id)
        now = self._now()
        wanted = _wanted(current, change)
        refundable = list(current.refundable)
        next_term = current.next_term
        quantity = current.quantity
        status = our_status(change.status) if "status" in wanted else current.status
        auto_renew = current.auto_renew if change.auto_renew is None else change.auto_renew
        if status in ("Suspended", "Cancelled") and "status" in wanted:
            auto_renew, next_term = False, None
            if status == "Cancelled":
                refundable = []
        if "quantity" in wanted and change.quantity is not None:
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
        if not auto_renew:
            next_term = None
        if change.clear_next_term:
            next_term = None
        elif change.next_term is not None:
            next_term = _scheduled(current, change.next_term)
        facts = replace(
            current,
            quantity=quantity,
            status=status,
            auto_renew=auto_renew,
            billing_cycle=(change.billing_cycle or current.billing_cycle or "").lower() or None,
            term_duration=change.term_duration or current.term_duration,
            refundable=tuple(refundable),
            next_term=next_term,
        )
        self._store(facts)
        self.applied_changes.append((subscription_id, change))
        return self._facts(subscription_id)

    def change_progress(
        self, customer_tenant: str, subscription_id: str, accepted: ChangeAccepted
    ) -> ChangeProgress:
        """Running until `accepted_polls` reads, then done with the subscription as it is, or,
        with `accepted_failure` or a rule the change now breaks, failed (not done) with the
        code, as the adapter maps a failed operation."""
        self._call("change_progress")
        if accepted.location not in self._accepted:
            raise NotFound(f"operation {accepted.location} was not found")
        sid, change, polls = self._accepted[accepted.location]
        polls += 1
        self._accepted[accepted.location] = (sid, change, polls)
        if polls < self.accepted_polls:
            return ChangeProgress(done=False, retry_after_seconds=1)
        failure = self._failures.get(accepted.location)
        if polls == self.accepted_polls:
            if self.accepted_failure is not None:
                failure = self.accepted_failure
            else:
                try:
                    self._check_change(self._facts(sid), change)
                    self._apply(sid, change)
                except UpstreamRejected as refused:
                    failure = (refused.code or "", refused.detail)
            if failure is not None:
                self._failures[accepted.location] = failure
        if failure is not None:
            return ChangeProgress(done=False, failed_code=failure[0], failed_reason=failure[1])
        return ChangeProgress(done=True, facts=self._facts(sid))

    def licence_counts(self, customer_tenant: str) -> list[LicenceCount]:
        """Per SKU of the active and suspended subscriptions, as the simulator's
        `subscribedskus`: the SKU's id, title and part number from the catalog behind
        `fallback` (else its product:sku), `assigned` licences as consumedUnits."""
        self._call("licence_counts")
        per_sku: dict[str, list[int]] = {}
        names: dict[str, str] = {}
        for sid, facts in self.subscriptions.items():
            status = our_status(facts.status)
            if status not in ("Active", "Suspended") or not facts.catalog_item_id:
                continue
            key = ":".join(facts.catalog_item_id.upper().split(":")[:2]).replace(":0002", ":0001")
            active, suspended, consumed = per_sku.setdefault(key, [0, 0, 0])
            names.setdefault(key, facts.name)
            per_sku[key] = [
                active + (facts.quantity if status == "Active" else 0),
                suspended + (facts.quantity if status == "Suspended" else 0),
                consumed + self.assigned.get(sid, 0),
            ]
        catalog = getattr(self.fallback, "catalog", None)
        counts = []
        for key, (active, suspended, consumed) in per_sku.items():
            sku = catalog.sku_by_key(key) if catalog is not None else None
            counts.append(
                LicenceCount(
                    sku_id=sku.product_sku_id if sku else key,
                    name=sku.title if sku else names[key],
                    assigned=min(consumed, active + suspended),
                    total=active + suspended,
                    active=active,
                    suspended=suspended,
                    part_number=sku.part_number if sku else key,
                )
            )
        return counts

    def _options(self, subscription_id: str) -> list[TransitionOption]:
        facts = self._facts(subscription_id)
        if subscription_id in self.transition_targets:
            options = list(self.transition_targets[subscription_id])
        elif facts.is_trial and facts.catalog_item_id:
            product = facts.catalog_item_id.split(":")[0]
            options = [TransitionOption(f"{product}:0001:PAID", facts.name, True)]
        else:
            options = []
        if facts.status != "Active":  # the simulator's words for every target
            why = "Subscription can't be Transitioned - source subscription isn't active."
            options = [replace(o, eligible=False, reasons=(why,)) for o in options]
        return options

    def transition_options(
        self, customer_tenant: str, subscription_id: str, *, scheduled: bool = False
    ) -> list[TransitionOption]:
        """The targets set in `transition_targets` (a trial: its paid catalog item); none is
        eligible unless the subscription is active."""
        self._call("transition_options")
        return self._options(subscription_id)

    def transition(
        self,
        customer_tenant: str,
        subscription_id: str,
        request: TransitionRequest,
        *,
        request_id: str,
    ) -> TransitionOutcome:
        """Convert or upgrade (replayed for a repeated request id, a refusal included);
        ineligible → rejected. An upgrade's seats get no cancellation window and keep the
        source's end date; a converted trial, or a source left without seats, is Cancelled."""
        self._call("transition")
        key = f"transition {request_id}"
        if key in self.replies:
            replayed: TransitionOutcome = self._replayed(key)
            return replayed
        try:
            outcome = self._transition(subscription_id, request, request_id)
        except UpstreamRejected as refused:
            self.replies[key] = refused
            raise
        self.replies[key] = outcome
        return outcome

    def transition_progress(
        self, customer_tenant: str, subscription_id: str, transition_id: str
    ) -> TransitionOutcome:
        """A started transition: Started until its `transition_polls`-th read, then Completed
        (the seats moved then) or Failed with `transition_failure`; unknown → NotFound."""
        self._call("transition_progress")
        started = self._started.get(transition_id)
        if started is None or started[0] != subscription_id:
            raise NotFound(f"transition {transition_id} of subscription {subscription_id}")
        sid, request, request_id, polls, end = started
        polls += 1
        if end is None and polls >= self.transition_polls:
            if self.transition_failure is not None:
                end = TransitionOutcome(
                    "Failed", failed_reason=self.transition_failure, transition_id=transition_id
                )
            else:
                end = replace(self._move(sid, request, request_id), transition_id=transition_id)
        self._started[transition_id] = (sid, request, request_id, polls, end)
        return end or TransitionOutcome("Started", transition_id=transition_id)

    def _transition(
        self, subscription_id: str, request: TransitionRequest, request_id: str
    ) -> TransitionOutcome:
        self._check_transition(subscription_id, request)
        if self.start_next_transitions > 0:
            self.start_next_transitions -= 1
            transition_id = str(uuid.uuid4())
            self._started[transition_id] = (subscription_id, request, request_id, 0, None)
            self.changes.append((request_id, subscription_id))
            return TransitionOutcome("Started", transition_id=transition_id)
        return replace(self._move(subscription_id, request, request_id), transition_id=None)

    def _check_transition(self, subscription_id: str, request: TransitionRequest) -> None:
        """The simulator's refusals of a transition: an ineligible target, too many seats."""
        options = {o.catalog_item_id.upper(): o for o in self._options(subscription_id)}
        option = options.get(request.to_catalog_item_id.upper())
        if option is None or not option.eligible:
            words = option.reasons[0] if option and option.reasons else None
            raise UpstreamRejected(
                words or f"{request.to_catalog_item_id} is not an eligible transition target.",
                code="800092" if option else "10001",
                status=400,
            )
        source = self._facts(subscription_id)
        if not source.is_trial and request.quantity > source.quantity:
            raise UpstreamRejected(
                "An upgrade cannot move more seats than the subscription has.", "400", 400
            )

    def _move(
        self, subscription_id: str, request: TransitionRequest, request_id: str
    ) -> TransitionOutcome:
        """Move the seats: a new subscription, the source left with the rest."""
        option = next(
            o
            for o in self._options(subscription_id)
            if o.catalog_item_id.upper() == request.to_catalog_item_id.upper()
        )
        source = self._facts(subscription_id)
        now = self._now()
        new_id = str(uuid.uuid4())
        tenant = self.tenant_of.get(subscription_id)
        if tenant is not None:
            self.tenant_of[new_id] = tenant
        operation = "convert_trial_subscription" if source.is_trial else "upgrade_subscription"
        self._audit(tenant, "subscription", operation, subscription_id)
        window = now + timedelta(hours=168)
        self._store(
            replace(
                source,
                id=new_id,
                catalog_item_id=request.to_catalog_item_id.upper(),
                name=option.title or source.name,
                quantity=request.quantity,
                term_duration=(request.term_duration or "P1Y")
                if source.is_trial
                else source.term_duration,
                billing_cycle=(request.billing_cycle or "monthly").lower()
                if source.is_trial
                else (request.billing_cycle or source.billing_cycle),
                status="Active",
                is_trial=False,
                trial_ends=None,
                start_date=now,
                commitment_end_date=(now + timedelta(days=365))
                if source.is_trial
                else source.commitment_end_date,
                cancellation_allowed_until=window if source.is_trial else None,
                refundable=(RefundableSeats(request.quantity, window),) if source.is_trial else (),
                next_term=None,
            )
        )
        left = 0 if source.is_trial else source.quantity - request.quantity
        ended = left <= 0
        self._store(
            replace(
                source,
                quantity=source.quantity if source.is_trial else left,
                status="Cancelled" if ended else source.status,
                auto_renew=False if ended else source.auto_renew,
                next_term=None,
            )
        )
        if (request_id, subscription_id) not in self.changes:
            self.changes.append((request_id, subscription_id))
        return TransitionOutcome("Completed", new_id, str(uuid.uuid4()))


_OUR_CHANGE_STATUSES = frozenset({"active", "suspended", "cancelled"})
_TERM_ORDER = {"P1M": 1, "P1Y": 2, "P3Y": 3}


def _wanted(current: SubscriptionFacts, change: SubscriptionChange) -> set[str]:
    """What a change would change (a field set to what it already is changes nothing)."""
    wanted = {
        name
        for name in ("quantity", "term_duration", "auto_renew")
        if getattr(change, name) is not None and getattr(change, name) != getattr(current, name)
    }
    if change.billing_cycle is not None and change.billing_cycle.lower() != (
        (current.billing_cycle or "").lower()
    ):
        wanted.add("billing_cycle")
    if change.status is not None and our_status(change.status) != our_status(current.status):
        wanted.add("status")
    if change.clear_next_term or change.next_term is not None:
        wanted.add("next_term")
    return wanted


def _scheduled(current: SubscriptionFacts, wanted: NextTerm) -> NextTerm:
    """The next term as Partner Center keeps it: what the change leaves out is the current
    offer's (the adapter sends all of it, the simulator answers all of it)."""
    return NextTerm(
        catalog_item_id=(wanted.catalog_item_id or current.catalog_item_id or "").upper() or None,
        quantity=wanted.quantity if wanted.quantity is not None else current.quantity,
        term_duration=wanted.term_duration or current.term_duration,
        billing_cycle=(wanted.billing_cycle or current.billing_cycle or "").lower() or None,
    )


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

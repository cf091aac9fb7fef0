"""Orders: what a customer buys (or changes), its lines with the prices it was shown, its states.

An order is one row of table `Orders` (PartitionKey the reseller slug, RowKey `order_row_key(id)`,
which sorts newest first; see shared/adapters/tables/orders.py for why). Lines, their price
snapshots and their results live inside the row: an order is read and written as a whole, with
its ETag, so a placed order costs one transaction per recorded step.

The Partner Center shapes needed to place it (`CartLineRequest`, `CartRef`, `CheckoutResult`,
`OrderProvisioning`) are ours: the adapter maps Microsoft's JSON to them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import AwareDatetime, Field, field_serializer, model_validator

from shared.domain.errors import Conflict
from shared.domain.failures import FailureKind
from shared.domain.model import Timestamped, WireModel, new_id
from shared.domain.money import Money
from shared.domain.pricing import LayerAmounts, PricedLine

_PRODUCT = r"[A-Za-z0-9]{1,40}"
# A Partner Center product id (`CFQ7TTC0LH18`): the first part of a catalog item id.
PRODUCT_ID_PATTERN = rf"^{_PRODUCT}$"
CATALOG_ITEM_PATTERN = rf"^{_PRODUCT}:[A-Za-z0-9]{{1,20}}:[A-Za-z0-9]{{1,20}}$"
TERM_PATTERN = r"^P\d+[MY]$"
MAX_LINES = 50
# Small-business SKUs (Business Basic/Standard/Premium, Apps for business) share a cap of 300
# seats per tenant, counted over the tenant's subscriptions of the product.
SMALL_BUSINESS_SEAT_CAP = 300
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_INVERT = str.maketrans(_CROCKFORD, _CROCKFORD[::-1])


def order_row_key(order_id: str) -> str:
    """The RowKey of an order: its ULID with every digit inverted, so newer sorts first."""
    return order_id.upper().translate(_INVERT)


class OrderKind(StrEnum):
    """New subscriptions, or one change of an existing subscription."""

    PURCHASE = "Purchase"
    CHANGE = "Change"


class OrderStatus(StrEnum):
    """Where an order is in its life (DESIGN.md, States)."""

    DRAFT = "Draft"
    PENDING_APPROVAL = "PendingApproval"
    SUBMITTED = "Submitted"
    PROVISIONING = "Provisioning"
    COMPLETED = "Completed"
    COMPLETED_WITH_ERRORS = "CompletedWithErrors"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


S = OrderStatus
# Every move an order may make; anything else is a Conflict. Failed → Submitted is the retry.
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.DRAFT: frozenset({S.PENDING_APPROVAL, S.SUBMITTED, S.CANCELLED}),
    S.PENDING_APPROVAL: frozenset({S.SUBMITTED, S.CANCELLED}),
    S.SUBMITTED: frozenset({S.PROVISIONING, S.FAILED}),
    S.PROVISIONING: frozenset({S.COMPLETED, S.COMPLETED_WITH_ERRORS, S.FAILED}),
    S.COMPLETED: frozenset(),
    S.COMPLETED_WITH_ERRORS: frozenset(),
    S.FAILED: frozenset({S.SUBMITTED}),
    S.CANCELLED: frozenset(),
}
TRANSIENT = frozenset({S.SUBMITTED, S.PROVISIONING})
FINAL = frozenset({S.COMPLETED, S.COMPLETED_WITH_ERRORS, S.FAILED, S.CANCELLED})


def can_move(current: OrderStatus, to: OrderStatus) -> bool:
    """Whether the transition table allows `current → to`."""
    return to in TRANSITIONS[current]


# --- commands -------------------------------------------------------------------------------


class OrderLineInput(WireModel):
    """One line of an order as a client sends it."""

    model_config = WireModel.model_config | {"extra": "forbid"}

    catalog_item_id: str = Field(
        pattern=CATALOG_ITEM_PATTERN,
        description="product:sku:availability, e.g. CFQ7TTC0LH18:0001:CFQ7TTC0K5BF.",
    )
    quantity: int = Field(ge=1, le=100000, description="Licences.")
    term_duration: str = Field(pattern=TERM_PATTERN, description="P1M, P1Y or P3Y.")
    billing_cycle: str = Field(pattern=r"^[a-z]{3,20}$", description="monthly, annual, …")
    markup_percent: Decimal | None = Field(
        None, ge=-100, le=100000, description="Customer price = reseller cost × (1 + mark-up)."
    )
    unit_price: Money | None = Field(
        None, description="A customer unit price set by hand, in the reseller's currency."
    )
    parent_line: int | None = Field(None, ge=0, description="Index of this add-on's base line.")
    parent_subscription_id: str | None = Field(
        None, pattern=r"^[0-9a-fA-F-]{36}$", description="The base subscription of an add-on."
    )
    friendly_name: str | None = Field(None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _one_price_rule(self) -> OrderLineInput:
        if self.markup_percent is not None and self.unit_price is not None:
            raise ValueError("give markupPercent or unitPrice, not both")
        if self.parent_line is not None and self.parent_subscription_id is not None:
            raise ValueError("give parentLine or parentSubscriptionId, not both")
        return self


class OrderCreate(WireModel):
    """A new order: its lines (add-ons are lines too)."""

    model_config = WireModel.model_config | {"extra": "forbid"}

    lines: list[OrderLineInput] = Field(min_length=1, max_length=MAX_LINES)


class OrderUpdate(OrderCreate):
    """A Draft's lines, replaced as a whole (If-Match)."""


class OrderDecision(WireModel):
    """Why an order is rejected (or a note on approval)."""

    model_config = WireModel.model_config | {"extra": "forbid"}

    reason: str | None = Field(None, min_length=1, max_length=500)


# --- the record -----------------------------------------------------------------------------


class LineResult(WireModel):
    """What came of one line: its subscription, or a sentence saying why not."""

    subscription_id: str | None = None
    partner_center_order_id: str | None = None
    error: str | None = None


class OrderLine(WireModel):
    """A line of an order: the offer, the quantity, the prices shown, the outcome.

    A Change order's line says what the change does, so that sums over orders never count a
    subscription twice: `quantity` is the seats it adds (negative: removes; 0: a change that
    moves no price) at the kept price, or, when the offer, term or billing cycle changes,
    every seat on the new offer; `subscription_quantity` is the subscription's seats after the
    change, and `priced` the subscription's price snapshot then (its `quantity` those seats).
    """

    catalog_item_id: str
    product_id: str
    sku_id: str
    name: str
    quantity: int
    subscription_quantity: int | None = None  # Change orders: the seats after the change
    term_duration: str
    billing_cycle: str
    markup_percent: Decimal | None = None
    unit_price: Money | None = None
    parent_line: int | None = None
    parent_subscription_id: str | None = None
    friendly_name: str | None = None
    is_trial: bool = False
    priced: PricedLine
    result: LineResult | None = None

    @field_serializer("markup_percent")
    def _pct(self, value: Decimal | None) -> str | None:
        return None if value is None else format(value.normalize(), "f")

    @property
    def amounts(self) -> LayerAmounts:
        """What the line is worth in every layer: unit price × `quantity` (for a Change
        order's line, the change's worth, not the whole subscription's)."""
        if self.subscription_quantity is None:
            return self.priced.extended
        return self.priced.unit.times(self.quantity)


class HistoryEntry(WireModel):
    """One status change: when, by whom, why."""

    status: OrderStatus
    at: AwareDatetime
    by: str
    reason: str | None = None


class OrderFailure(WireModel):
    """Why an order failed: `reason` for people, `detail` (Partner Center's words) for staff.

    `kind` decides what a retry sends: after a refusal, new MS-RequestIds (the same request
    would be refused again); after a transient failure, the same ones (a cart or checkout that
    may have happened is replayed, never made twice).
    """

    kind: FailureKind
    reason: str
    detail: str | None = None


class ChangeKind(StrEnum):
    """What a Change order does to its one subscription."""

    UPDATE = "Update"  # quantity, billing cycle, auto-renew, status (PATCH of the subscription)
    CONVERT = "Convert"  # trial → paid (a transition)
    UPGRADE = "Upgrade"  # to another SKU among the eligible ones (a transition)
    SCHEDULE = "Schedule"  # set the change applied at renewal (PATCH, next-term instructions)
    UNSCHEDULE = "Unschedule"  # remove it (PATCH)


class SubscriptionChangeOrder(WireModel):
    """The change a Change order carries, and what Partner Center made of it so far.

    Only the fields the change names are set; `summary` says it in a sentence ("quantity 10 →
    12"). `request_id` (the MS-RequestId of the PATCH or transition) is stored with the order
    *before* the call, so a redelivered step replays the same request; `accepted_location` is a
    202's Location and `transition_id` a transition Partner Center answered "started", each
    polled by re-enqueueing the step.
    """

    kind: ChangeKind
    subscription_id: str
    summary: str
    quantity: int | None = None
    billing_cycle: str | None = None
    term_duration: str | None = None
    auto_renew: bool | None = None
    status: str | None = None  # Active, Suspended, Cancelled
    to_catalog_item_id: str | None = None  # upgrade, conversion, next-term product
    previous_quantity: int | None = None
    request_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    accepted_location: str | None = None
    # Partner Center's id of a transition it answered "started": read again until it ends.
    transition_id: str | None = None
    applied: bool = False  # Partner Center has done it (the record may still need updating)
    warnings: list[str] = Field(default_factory=list)  # e.g. "the scheduled change is removed"


class Order(Timestamped):
    """An order of a reseller's customer (table `Orders`)."""

    reseller: str
    customer_id: str
    id: str = Field(default_factory=new_id)
    kind: OrderKind = OrderKind.PURCHASE
    change: SubscriptionChangeOrder | None = None  # kind Change: the one change it carries
    status: OrderStatus = OrderStatus.DRAFT
    lines: list[OrderLine]
    currency: str
    history: list[HistoryEntry] = Field(default_factory=list)
    failure: OrderFailure | None = None
    # What staff should weigh before approving (e.g. a negative margin): never in a customer's
    # view, unlike `history`, so it may name costs.
    warnings: list[str] = Field(default_factory=list)
    created_by: str
    quote_id: str | None = None  # the accepted quote this order was made from
    # Partner Center: ids, and the MS-RequestIds stored before each call that uses them.
    cart_request_id: str | None = None
    cart_id: str | None = None
    cart_created_at: AwareDatetime | None = None  # when this attempt asked for its cart
    checkout_request_id: str | None = None
    checked_out: bool = False
    partner_center_order_ids: list[str] = Field(default_factory=list)
    subscriptions_recorded: bool = False
    attempts: int = 0  # provisioning attempts (a retry of a Failed order counts one more)
    polls: int = 0  # waits for Partner Center's provisioning (re-enqueued with a delay)
    nudged_at: AwareDatetime | None = None  # when the watchdog re-enqueued this attempt

    @property
    def status_since(self) -> datetime:
        """When the order entered its current status."""
        return self.history[-1].at if self.history else self.updated_at

    def move(self, to: OrderStatus, at: datetime, by: str, reason: str | None = None) -> None:
        """Change status by the transition table (Conflict otherwise), with a history entry."""
        if not can_move(self.status, to):
            raise Conflict(f"an order that is {self.status.value} cannot become {to.value}")
        self.status = to
        self.history.append(HistoryEntry(status=to, at=at, by=by, reason=reason))
        self.updated_at = at

    def start_attempt(self) -> None:
        """Fresh MS-RequestIds for a new provisioning attempt (first submit, or a retry after a
        refusal): nothing of an earlier attempt is reused."""
        self.attempts += 1
        self.cart_request_id = str(uuid.uuid4())
        self.checkout_request_id = str(uuid.uuid4())
        self.cart_id = None
        self.cart_created_at = None
        self.checked_out = False
        self.partner_center_order_ids = []
        self.failure = None
        self.polls = 0
        self.nudged_at = None
        for line in self.lines:
            line.result = None
        if self.change is not None:
            # A refused change asked again is a new request (the same one is refused again).
            self.change.request_id = str(uuid.uuid4())
            self.change.accepted_location = None
            self.change.transition_id = None
            self.change.applied = False

    def resume_attempt(self) -> None:
        """Provision again with the stored MS-RequestIds, cart and order ids (a retry after a
        transient failure): whatever Partner Center did already is replayed, not repeated."""
        self.attempts += 1
        self.failure = None
        self.polls = 0
        self.nudged_at = None


class ProvisionOrderMessage(WireModel):
    """The `provision-order` queue message: ids only, the record holds the data."""

    reseller: str
    order_id: str
    poll: int = 0  # how many times the step has waited for Partner Center's provisioning
    message_id: str | None = None


# --- what the Partner Center port speaks ------------------------------------------------------


@dataclass(frozen=True)
class CartLineRequest:
    """One line to put in a Partner Center cart."""

    catalog_item_id: str
    quantity: int
    term_duration: str
    billing_cycle: str
    reseller_mpn_id: str  # participant transaction_reseller
    order_group: str = "0"
    friendly_name: str | None = None


@dataclass(frozen=True)
class CartRef:
    """A created cart: its id and, per line index, any error Partner Center found."""

    id: str
    line_errors: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PlacedOrderLine:
    """One line of a Partner Center order."""

    number: int
    catalog_item_id: str
    quantity: int
    subscription_id: str | None


@dataclass(frozen=True)
class PlacedOrder:
    """A Partner Center order (one per order group of a cart)."""

    id: str
    created_at: datetime | None
    lines: tuple[PlacedOrderLine, ...]


@dataclass(frozen=True)
class OrderGroupError:
    """An order group Partner Center refused at checkout."""

    order_group: str
    code: str
    description: str
    available_quantity: int | None = None


@dataclass(frozen=True)
class CheckoutResult:
    """What a checkout placed and what it refused."""

    orders: tuple[PlacedOrder, ...]
    errors: tuple[OrderGroupError, ...] = ()


@dataclass(frozen=True)
class OrderProvisioning:
    """Whether every line of a Partner Center order is provisioned."""

    order_id: str
    done: bool
    pending_lines: int = 0

"""The simulator's records: compact, picklable, rendered to Partner Center JSON on the way out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

LIVE_STATUSES = frozenset({"active", "suspended", "pending"})


@dataclass(slots=True)
class Customer:
    """A customer tenant the partner has a relationship with."""

    id: str
    commerce_id: str
    domain: str
    company_name: str
    registration_number: str | None
    billing: dict[str, Any]
    associated_partner_id: str | None
    created: datetime
    ready_at: datetime
    # segment -> approved | underReview | rejected; commercial needs no qualification.
    qualifications: dict[str, str] = field(default_factory=dict)
    admin_password: str = ""


@dataclass(slots=True)
class RefundWindow:
    """Seats bought at one moment that can still be returned until `until`."""

    quantity: int
    until: datetime


@dataclass(slots=True)
class Subscription:
    """A new-commerce subscription."""

    id: str
    customer_id: str
    product_id: str
    sku_id: str
    availability_id: str
    segment: str
    friendly_name: str
    quantity: int
    status: str
    auto_renew: bool
    billing_cycle: str
    term_duration: str
    created: datetime
    ready_at: datetime
    effective_start: datetime
    commitment_end: datetime | None
    cancel_until: datetime | None
    refund_windows: list[RefundWindow]
    is_trial: bool
    partner_id: str | None
    order_id: str
    parent_id: str | None = None
    scheduled: dict[str, Any] | None = None
    consumed_units: int = 0
    version: int = 1
    updates: int = 0
    lifecycle_since: datetime | None = None
    # Seats a trial had; a conversion must keep at least as many.
    trial_seats: int = 0

    @property
    def catalog_item_id(self) -> str:
        """product:sku:availability."""
        return f"{self.product_id}:{self.sku_id}:{self.availability_id}"

    @property
    def sku_key(self) -> str:
        """product:sku."""
        return f"{self.product_id}:{self.sku_id}"


@dataclass(slots=True)
class OrderLine:
    """One line of an order."""

    number: int
    offer_id: str
    subscription_id: str | None
    parent_subscription_id: str | None
    term_duration: str
    billing_cycle: str
    transaction_type: str
    quantity: int
    unit_price: Decimal
    erp: Decimal
    partner_id_on_record: str | None
    friendly_name: str


@dataclass(slots=True)
class Order:
    """An order placed by a cart checkout or a subscription change."""

    id: str
    customer_id: str
    lines: list[OrderLine]
    currency: str
    created: datetime
    ready_at: datetime
    billing_cycle: str
    transaction_type: str
    order_group: str = "0"


@dataclass(slots=True)
class Cart:
    """A cart with its lines as the client sent them (validated for shape)."""

    id: str
    customer_id: str
    lines: list[dict[str, Any]]
    created: datetime
    modified: datetime
    expires: datetime
    status: str = "Active"
    checkout_result: dict[str, Any] | None = None


@dataclass(slots=True)
class AuditRecord:
    """What changed, for delta syncs."""

    id: str
    date: datetime
    customer_id: str | None
    customer_name: str | None
    resource_type: str
    operation_type: str
    resource_id: str
    new_value: dict[str, Any] | None
    old_value: dict[str, Any] | None = None


@dataclass(slots=True)
class Transition:
    """A trial conversion or upgrade."""

    id: str
    customer_id: str
    from_subscription_id: str
    to_subscription_id: str | None
    from_catalog_item_id: str
    to_catalog_item_id: str
    quantity: int
    term_duration: str
    billing_cycle: str
    transition_type: str
    eligibility_type: str
    status: str
    created: datetime
    order_id: str | None = None
    # An immediate transition answered in progress: it ends on that many reads of it
    # (`GET …/transitions?operationId=`), moving the seats then, or failing with `error`.
    polls_left: int | None = None
    error: dict[str, Any] | None = None


@dataclass(slots=True)
class PendingPatch:
    """A subscription PATCH answered with 202, applied when `due` passes."""

    id: str
    customer_id: str
    subscription_id: str
    body: dict[str, Any]
    created: datetime
    due: datetime
    status: str = "inProgress"
    error: dict[str, Any] | None = None
    polls_left: int | None = None  # finished by reads of its Location, not by the clock

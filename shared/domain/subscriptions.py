"""Subscriptions as the platform records them (table `Subscriptions`: customer id, subscription id).

The id is Partner Center's. Facts (dates, window, status, refundable seats, the scheduled
next-term change) come from Partner Center through the port as `SubscriptionFacts`; the record
adds what only we know: the order, the price snapshot, the change in flight.

The port speaks these types for subscription changes too: `SubscriptionChange` (what to change;
the adapter reads the current resource, changes only that, and writes the whole resource back
with its ETag), `ChangeAccepted` (Partner Center answered 202 + Location: poll it),
`ChangeProgress`, `LicenceCount` (`subscribedskus`), `TransitionOption` / `TransitionRequest` /
`TransitionOutcome` (trial conversion and upgrades).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, Field

from shared.domain.model import Timestamped
from shared.domain.orders import SubscriptionChangeOrder
from shared.domain.pricing import PricedLine


class SubscriptionOrigin(StrEnum):
    """How the record came to be."""

    ORDERED_HERE = "OrderedHere"
    SYNCED = "Synced"


@dataclass(frozen=True)
class RefundableSeats:
    """Seats that may still be removed for a refund, and until when (their own 7-day window)."""

    quantity: int
    until: datetime


@dataclass(frozen=True)
class NextTerm:
    """A change Partner Center applies at renewal (`scheduledNextTermInstructions`)."""

    catalog_item_id: str | None  # product:sku:availability; None keeps the current one
    quantity: int | None
    term_duration: str | None
    billing_cycle: str | None


@dataclass(frozen=True)
class SubscriptionFacts:
    """What Partner Center says about one subscription (mapped by the adapter)."""

    id: str
    catalog_item_id: str | None
    name: str
    quantity: int
    term_duration: str | None
    billing_cycle: str | None
    status: str
    start_date: datetime | None
    commitment_end_date: datetime | None
    cancellation_allowed_until: datetime | None
    auto_renew: bool
    is_trial: bool
    order_id: str | None
    parent_subscription_id: str | None
    # The version Partner Center holds (its `attributes.etag`); a PATCH sends it as If-Match.
    etag: str | None = None
    refundable: tuple[RefundableSeats, ...] = ()
    next_term: NextTerm | None = None
    trial_ends: datetime | None = None  # a trial's end (its commitment end date)
    # The reseller of record (`partnerId`: its MPN id); a tenant that moved to another reseller,
    # or has two, lists subscriptions that are not this reseller's.
    partner_id: str | None = None


@dataclass(frozen=True)
class LicenceCount:
    """Licences of one SKU on the customer's tenant (`subscribedskus`)."""

    sku_id: str  # Partner Center's product SKU id (a GUID, not the catalog's `0001`)
    name: str
    assigned: int  # consumedUnits
    total: int  # totalUnits (active + warning + suspended)
    active: int
    suspended: int
    # The SKU's part number (`skuPartNumber`, e.g. O365_BUSINESS_ESSENTIALS): the catalog SKU
    # carries the same, which is how a subscription finds its licence count.
    part_number: str | None = None


@dataclass(frozen=True)
class SubscriptionChange:
    """What one PATCH changes; None leaves a field as it is.

    `status` is our word: `Active` (reactivate), `Suspended`, `Cancelled` (Partner Center's
    `deleted`). `next_term` set replaces the scheduled change; `clear_next_term` removes it.
    Everything not named here is sent back exactly as Partner Center returned it.
    """

    quantity: int | None = None
    billing_cycle: str | None = None
    term_duration: str | None = None
    auto_renew: bool | None = None
    status: str | None = None
    next_term: NextTerm | None = None
    clear_next_term: bool = False


@dataclass(frozen=True)
class ChangeAccepted:
    """Partner Center accepted a change for later (202): poll `location` until it is done."""

    location: str
    retry_after_seconds: float | None = None


@dataclass(frozen=True)
class ChangeProgress:
    """Where an accepted change is, exactly one of three:

    - done: Partner Center made the change (`done`, with the subscription as it now is in
      `facts` when the answer carried it);
    - failed: Partner Center refused it after all (`done` False, `failed_reason` set, with its
      code in `failed_code` when it gave one): nothing was changed;
    - running: neither (`retry_after_seconds` says when to look again, if Partner Center said).
    """

    done: bool
    facts: SubscriptionFacts | None = None
    failed_code: str | None = None
    failed_reason: str | None = None
    retry_after_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.failed_code is not None and self.failed_reason is None:
            raise ValueError("a failed change needs its reason (failed_reason)")
        if self.done and self.failed:
            raise ValueError("a change is either done or failed, not both")

    @property
    def failed(self) -> bool:
        """Partner Center refused the accepted change: nothing was changed."""
        return self.failed_reason is not None


@dataclass(frozen=True)
class TransitionOption:
    """A catalog item a subscription may move to now (`immediate`) or at renewal
    (`scheduled`), or why not."""

    catalog_item_id: str
    title: str
    eligible: bool
    reasons: tuple[str, ...] = ()  # Partner Center's words when not eligible


@dataclass(frozen=True)
class TransitionRequest:
    """Move a subscription (trial → paid: the same catalog item of the paid availability;
    upgrade: a target among the options). `quantity` seats move."""

    to_catalog_item_id: str
    quantity: int
    term_duration: str | None = None
    billing_cycle: str | None = None
    with_licence_transfer: bool = True


@dataclass(frozen=True)
class TransitionOutcome:
    """What a transition did: its status (`Completed`, `Started`, `Failed`), the subscription
    the seats went to (a new one for an upgrade), Partner Center's order id, why if it failed,
    and Partner Center's id of the transition (`transition_id`), by which a started one is
    read again (`transition_progress`)."""

    status: str
    to_subscription_id: str | None = None
    partner_center_order_id: str | None = None
    failed_reason: str | None = None
    transition_id: str | None = None

    @property
    def failed(self) -> bool:
        """Partner Center gave the transition up: no seats moved."""
        return self.status.lower() == "failed"

    @property
    def done(self) -> bool:
        """The seats have moved and the subscription they went to is known."""
        return self.status.lower() == "completed" and bool(self.to_subscription_id)


class PendingChange(BaseModel):
    """A change asked for and not yet applied or failed: the Change order that carries it."""

    order_id: str
    summary: str  # e.g. "quantity 10 → 12"
    requested_at: AwareDatetime
    requested_by: str
    # What the Change order carries, so that the order can be written from this record alone
    # (by the request, or by the watchdog after a crash between the two writes).
    change: SubscriptionChangeOrder | None = None
    needs_approval: bool = False  # the order starts PendingApproval rather than Submitted


class Subscription(Timestamped):
    """One subscription of a customer."""

    reseller: str
    customer_id: str
    id: str
    catalog_item_id: str | None = None
    name: str
    quantity: int
    term_duration: str | None = None
    billing_cycle: str | None = None
    status: str
    start_date: AwareDatetime | None = None
    commitment_end_date: AwareDatetime | None = None
    cancellation_allowed_until: AwareDatetime | None = None
    auto_renew: bool = False
    is_trial: bool = False
    parent_subscription_id: str | None = None
    priced: PricedLine | None = None
    origin: SubscriptionOrigin = SubscriptionOrigin.ORDERED_HERE
    order_id: str | None = None
    partner_center_order_id: str | None = None
    # From Partner Center, refreshed whenever the platform reads the subscription there.
    refundable: list[RefundableSeats] = Field(default_factory=list)
    next_term: NextTerm | None = None
    trial_ends: AwareDatetime | None = None
    assigned_licences: int | None = None  # from `subscribedskus`, for this subscription's SKU
    refreshed_at: AwareDatetime | None = None  # when the facts were last read from Partner Center
    # What the platform could not work out about it, for a person (e.g. a subscription found in
    # Partner Center whose offer is not in the catalog has no price).
    note: str | None = None
    # The change in flight (an Order of kind Change); at most one at a time.
    pending_change: PendingChange | None = None
    # Mirrors `pending_change is not None` as a column the watchdog can filter on.
    changing: bool = False
    # Kept by the sync (shared/domain/sync.py): the run that last changed this record and what
    # it did (Added, Updated, Ended).
    sync_run: str | None = None
    sync_change: str | None = None
    # The digest of the last priced state sent to the ledger (shared/domain/ledger.py): a write
    # whose priced state has another digest owes the ledger a fact.
    ledgered: str | None = None

    @classmethod
    def from_facts(
        cls,
        reseller: str,
        customer_id: str,
        facts: SubscriptionFacts,
        at: datetime,
        *,
        origin: SubscriptionOrigin,
        order_id: str | None = None,
    ) -> Subscription:
        """A new record of a subscription Partner Center holds (found by the sync, or made by a
        change here), its facts applied; no price yet."""
        record = cls(
            reseller=reseller,
            customer_id=customer_id,
            id=facts.id,
            name=facts.name,
            quantity=facts.quantity,
            status=facts.status,
            origin=origin,
            order_id=order_id,
            partner_center_order_id=facts.order_id,
            created_at=at,
            updated_at=at,
        )
        record.apply_facts(facts, at)
        return record

    @property
    def product_id(self) -> str | None:
        """The product part of the catalog item id."""
        return self.catalog_item_id.split(":")[0] if self.catalog_item_id else None

    @property
    def renews_on(self) -> date | None:
        """The anniversary: the day after the commitment ends (UTC), when it renews or expires."""
        if self.commitment_end_date is None:
            return None
        return self.commitment_end_date.astimezone(UTC).date() + timedelta(days=1)

    @property
    def live(self) -> bool:
        """Counts against limits (not cancelled, expired or deleted)."""
        return self.status.lower() in ("active", "pending", "suspended")

    def begin_change(self, pending: PendingChange) -> None:
        """Record the change in flight (write 1 of a change)."""
        self.pending_change = pending
        self.changing = True

    def end_change(self, order_id: str | None = None) -> bool:
        """Forget the change in flight (only the one of `order_id`, when given); whether the
        record changed."""
        if self.pending_change is not None and order_id not in (None, self.pending_change.order_id):
            return False
        changed = self.pending_change is not None or self.changing
        self.pending_change = None
        self.changing = False
        return changed

    def apply_facts(self, facts: SubscriptionFacts, at: datetime) -> bool:
        """Take what Partner Center says now (status, seats, dates, window, next term); what
        only the platform knows (prices, origin, the change in flight) stays. Whether anything
        changed (`refreshed_at`, always moved to `at`, does not count): a sync that finds
        nothing new writes nothing."""
        values = {
            "catalog_item_id": facts.catalog_item_id or self.catalog_item_id,
            "name": facts.name,
            "quantity": facts.quantity,
            "term_duration": facts.term_duration,
            "billing_cycle": facts.billing_cycle,
            "status": facts.status,
            "start_date": facts.start_date,
            "commitment_end_date": facts.commitment_end_date,
            "cancellation_allowed_until": facts.cancellation_allowed_until,
            "auto_renew": facts.auto_renew,
            "is_trial": facts.is_trial,
            "parent_subscription_id": facts.parent_subscription_id,
            "refundable": list(facts.refundable),
            "next_term": facts.next_term,
            "trial_ends": facts.trial_ends,
        }
        changed = False
        for name, value in values.items():
            if getattr(self, name) != value:
                setattr(self, name, value)
                changed = True
        self.refreshed_at = at
        return changed

"""Subscriptions as the platform records them (table `Subscriptions`: customer id, subscription id).

The id is Partner Center's. Facts (dates, window, status) come from Partner Center through the
port as `SubscriptionFacts`; the record adds what only we know: the order, the price snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime

from shared.domain.model import Timestamped
from shared.domain.pricing import PricedLine


class SubscriptionOrigin(StrEnum):
    """How the record came to be."""

    ORDERED_HERE = "OrderedHere"
    SYNCED = "Synced"


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

    @property
    def product_id(self) -> str | None:
        """The product part of the catalog item id."""
        return self.catalog_item_id.split(":")[0] if self.catalog_item_id else None

    @property
    def live(self) -> bool:
        """Counts against limits (not cancelled, expired or deleted)."""
        return self.status.lower() in ("active", "pending", "suspended")

"""The usage report's records: the daily import of Azure usage and its aggregated rows.

An import is one record per billing month (`UsageImports`, PartitionKey `usage`, RowKey the
month). Its steps travel on the `usage-import` queue: start the export → poll it → import blob
0, 1, … → finish. Each blob's lines are summed per (customer, subscription, meter category,
resource group, unit) into `UsageAggregate` rows, stored under the reseller, the month and the
import's *tag* (from the manifest's etag) with keys that depend only on the blob and the grain:
importing a blob again rewrites the same rows with the same sums, never adds to them. The
report reads the rows of the month's `active_tag` only; `finish` flips it to the new tag once
every blob is in, and the rows of older tags are deleted after.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.domain.model import Record, new_id
from shared.domain.money import Money, round_money
from shared.domain.pricing import factor, percent
from shared.domain.usage import BILLING_MONTH_PATTERN, BillingPeriod, UsageLine

IMPORTS_PARTITION = "usage"
# How many unknown tenant ids an import record lists (the count is always complete).
MAX_UNKNOWN_TENANTS = 20
MAX_ERRORS = 20


class UsageImportStatus(StrEnum):
    """Where a month's import is."""

    QUEUED = "Queued"  # a start message is on its way
    EXPORTING = "Exporting"  # Partner Center prepares the export; polled later
    IMPORTING = "Importing"  # reading the blobs, one message each
    SUCCEEDED = "Succeeded"  # every blob in; the report reads this import
    FAILED = "Failed"  # the export failed or a step gave up; the next day's timer retries

    @property
    def in_flight(self) -> bool:
        """Whether a run is under way."""
        return self in (self.QUEUED, self.EXPORTING, self.IMPORTING)


class UsageImport(Record):
    """The import of one billing month (table `UsageImports`: `usage`, month)."""

    month: str = Field(pattern=BILLING_MONTH_PATTERN)
    period: BillingPeriod
    currency: str
    status: UsageImportStatus = UsageImportStatus.QUEUED
    # One attempt; messages of an older run find another id here and do nothing.
    run_id: str = Field(default_factory=new_id)
    operation_id: str | None = None
    operation_location: str | None = None
    manifest_id: str | None = None
    manifest_etag: str | None = None
    tag: str | None = None  # this run's rows (from the manifest etag)
    blob_count: int = 0
    blobs_done: list[int] = Field(default_factory=list)
    lines: int = 0
    skipped_lines: int = 0
    unknown_tenants: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    # The pointer the report reads, and tags whose rows are to be deleted.
    active_tag: str | None = None
    active_manifest_id: str | None = None
    imported_at: AwareDatetime | None = None
    stale_tags: list[str] = Field(default_factory=list)
    started_at: AwareDatetime
    updated_at: AwareDatetime
    finished_at: AwareDatetime | None = None
    failure_reason: str | None = None


class UsageStep(StrEnum):
    """The steps of an import, one queue message each."""

    START = "start"
    POLL = "poll"
    BLOB = "blob"
    FINISH = "finish"


class UsageImportMessage(BaseModel):
    """A `usage-import` message: which step of which run of which month."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    step: UsageStep
    month: str = Field(pattern=BILLING_MONTH_PATTERN)
    run_id: str = Field(alias="runId")
    blob: int | None = Field(None, ge=0)
    message_id: str | None = Field(None, alias="messageId")

    def body(self) -> dict[str, object]:
        """The JSON body of the message."""
        body: dict[str, object] = {"step": self.step.value, "month": self.month}
        body["runId"] = self.run_id
        if self.blob is not None:
            body["blob"] = self.blob
        return body


def tag_of(etag: str) -> str:
    """A storage-safe tag for a manifest etag (any characters in, 20 hex digits out)."""
    return hashlib.sha256(etag.encode()).hexdigest()[:20]


def rows_partition(reseller: str, month: str, tag: str) -> str:
    """Where the rows of one reseller, month and import live."""
    return f"{reseller}:{month}:{tag}"


class UsageAggregate(BaseModel):
    """One blob's usage of one customer at the report's finest grain, summed (unrounded)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reseller: str
    customer_id: str
    customer_name: str = ""
    subscription_id: str
    meter_category: str
    resource_group: str
    unit: str
    quantity: Decimal
    pre_tax: Decimal  # Partner Center's pre-tax amount in the billing currency
    currency: str
    lines: int

    def row_key(self, blob_key: str) -> str:
        """Sorted by customer (a customer filter is a range), unique per blob and grain."""
        grain = "\n".join(
            (self.subscription_id.lower(), self.meter_category, self.resource_group, self.unit)
        )
        digest = hashlib.sha256(grain.encode()).hexdigest()[:24]
        return f"{self.customer_id}~{blob_key}~{digest}"


def blob_key(blob_name: str) -> str:
    """A storage-safe key for a blob's name."""
    return hashlib.sha256(blob_name.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Owner:
    """Whose a customer tenant is on the platform."""

    reseller: str
    customer_id: str


@dataclass
class BlobSums:
    """What one blob brought: aggregates, and the lines no customer on record claims."""

    rows: list[UsageAggregate]
    lines: int
    skipped: int
    unknown_tenants: list[str]


def aggregate(lines: Iterable[UsageLine], owners: dict[str, Owner]) -> BlobSums:
    """Sum a blob's lines per reseller and grain; lines of unknown tenants are counted apart.

    `owners` maps lower-cased customer tenant ids to their reseller and customer.
    """
    sums: dict[tuple[str, ...], list[Decimal | int | str]] = {}
    total = skipped = 0
    unknown: dict[str, None] = {}
    for line in lines:
        total += 1
        owner = owners.get(line.customer_tenant_id.lower())
        if owner is None:
            skipped += 1
            unknown.setdefault(line.customer_tenant_id.lower())
            continue
        key = (
            owner.reseller,
            owner.customer_id,
            line.subscription_id.lower(),
            line.meter_category,
            line.resource_group,
            line.unit,
            line.currency,
        )
        found = sums.get(key)
        if found is None:
            sums[key] = [line.quantity, line.billing_pre_tax_total.amount, 1, line.customer_name]
        else:
            found[0] = Decimal(found[0]) + line.quantity
            found[1] = Decimal(found[1]) + line.billing_pre_tax_total.amount
            found[2] = int(found[2]) + 1
    rows = [
        UsageAggregate(
            reseller=reseller,
            customer_id=customer,
            customer_name=str(name),
            subscription_id=subscription,
            meter_category=category,
            resource_group=group,
            unit=unit,
            quantity=Decimal(quantity),
            pre_tax=Decimal(pre_tax),
            currency=currency,
            lines=int(count),
        )
        for (reseller, customer, subscription, category, group, unit, currency), (
            quantity,
            pre_tax,
            count,
            name,
        ) in sums.items()
    ]
    return BlobSums(rows, total, skipped, list(unknown))


GroupBy = Literal["meterCategory", "resourceGroup", "subscription"]
GROUP_FIELDS: dict[str, str] = {
    "meterCategory": "meter_category",
    "resourceGroup": "resource_group",
    "subscription": "subscription_id",
}


# --- pricing the report's rows ------------------------------------------------------------------


@dataclass(frozen=True)
class UsageAmounts:
    """One group's amounts in every layer (of `currency`), each rounded once from the
    unrounded sum."""

    currency: str
    microsoft_cost: Decimal
    reseller_cost: Decimal
    customer_price: Decimal
    margin: Decimal
    margin_percent: Decimal | None

    def money(self, layer: str) -> Money:
        """One layer's amount as Money (`reseller_cost`, `customer_price`, …)."""
        amount: Decimal = getattr(self, layer)
        return Money(amount=amount, currency=self.currency)


def usage_amounts(
    pre_tax: Decimal,
    currency: str,
    distributor_markup_percent: Decimal,
    usage_markup_percent: Decimal,
) -> UsageAmounts:
    """Partner Center's pre-tax amount (the distributor's Microsoft cost) priced up:
    reseller cost = it × (1 + distributor mark-up), customer price = reseller cost × (1 + usage
    mark-up), computed unrounded and rounded half-up once at the end; margin = price − cost.
    (Decimals, not Money: a report prices thousands of groups, and Money validates each step.)
    """
    reseller = pre_tax * factor(distributor_markup_percent)
    reseller_cost = round_money(reseller, currency)
    customer_price = round_money(reseller * factor(usage_markup_percent), currency)
    margin = customer_price - reseller_cost
    return UsageAmounts(
        currency=currency,
        microsoft_cost=round_money(pre_tax, currency),
        reseller_cost=reseller_cost,
        customer_price=customer_price,
        margin=margin,
        margin_percent=percent(margin, customer_price),
    )

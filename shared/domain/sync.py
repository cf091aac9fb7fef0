"""Sync runs: a reseller's customers, subscriptions and licences mirrored from Partner Center.

A run is one row of table `SyncRuns` (PartitionKey the reseller slug, RowKey `sync_row_key(id)`,
newest first). Its work after the customer list is split into chunks (table `SyncChunks`:
PartitionKey the run id, RowKey the chunk number), each a page of customers that one
`sync-reseller` message processes; a chunk keeps its own checkpoint (how many of its customers
are done) and its own counts, so a redelivered message resumes where the last one stopped and
no figure is counted twice. The run's figures are the customer phase's plus the sum of its
chunks', added up when the last chunk ends.

Records the sync changes carry the run's id and what it did to them (`sync_run`, `sync_change`
on customers and subscriptions): a customer done again after a crash is counted as it was the
first time, not as "unchanged".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import (
    AliasChoices,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    model_serializer,
    model_validator,
)

from shared.domain.model import Timestamped, WireModel, new_id
from shared.domain.orders import order_row_key

# Every run keeps at most this many error lines (the total is counted): a run over 10,000
# customers that fails on each would otherwise outgrow its row.
MAX_ERRORS_KEPT = 50
# A finished run keeps at most this many ids of customers it could not refresh (the next delta
# refreshes them); with more, the next nightly run is Full. 500 ids fit a property easily.
MAX_FAILED_KEPT = 500


class SyncKind(StrEnum):
    """Everything (the first run, Sync now) or what changed since the last complete run."""

    FULL = "Full"
    DELTA = "Delta"


class SyncTrigger(StrEnum):
    """Who started the run."""

    NIGHTLY = "Nightly"
    MANUAL = "Manual"


class SyncStatus(StrEnum):
    """`Queued → Running → Succeeded | Failed`."""

    QUEUED = "Queued"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def finished(self) -> bool:
        """The run has ended (either way)."""
        return self in (SyncStatus.SUCCEEDED, SyncStatus.FAILED)


class SyncChange(StrEnum):
    """What a run did to a record (kept on the record as `sync_change`)."""

    ADDED = "Added"
    UPDATED = "Updated"
    ENDED = "Ended"  # a subscription that expired or was cancelled outside the platform
    UNASSOCIATED = "Unassociated"  # a customer no longer associated with the reseller
    LICENCES = "Licences"  # a subscription whose assigned licence count changed
    REASSOCIATED = "Reassociated"  # a flagged customer Partner Center lists as ours again


def sync_marks(record_run: str | None, record_change: str | None, run_id: str) -> set[SyncChange]:
    """What the run `run_id` has already done to a record (its `sync_run`/`sync_change`): a
    record done again after a crash is counted as it was the first time. `sync_change` holds
    one change or several joined by commas (a subscription updated and its licences too)."""
    if record_run != run_id or not record_change:
        return set()
    return {SyncChange(v) for v in record_change.split(",") if v in SyncChange.__members__.values()}


def marks_text(marks: set[SyncChange]) -> str | None:
    """`sync_change` for a set of changes (None for none), in a stable order."""
    return ",".join(sorted(m.value for m in marks)) or None


class SyncCounts(BaseModel):
    """What a run (or one chunk of it) changed, and what it cost."""

    model_config = ConfigDict(extra="ignore")

    customers_added: int = 0
    customers_updated: int = 0
    customers_unassociated: int = 0
    subscriptions_added: int = 0
    subscriptions_updated: int = 0
    subscriptions_ended: int = 0
    licences_updated: int = 0  # subscriptions whose assigned licence count changed
    customers_refreshed: int = 0  # customers whose subscriptions or licences were read
    partner_center_calls: int = 0
    throttled_waits: int = 0  # 429s answered (each waited out, as Retry-After asked)
    throttled_seconds: float = 0.0  # time spent waiting for the request budget or a 429
    # Data records written (customers, subscriptions); the run's bookkeeping (its row, its
    # chunks' checkpoints, messages) is not counted. Runs stored before the rename say
    # `table_writes`.
    records_written: int = Field(
        0, validation_alias=AliasChoices("records_written", "table_writes")
    )

    def __add__(self, other: SyncCounts) -> SyncCounts:
        return SyncCounts(
            **{name: getattr(self, name) + getattr(other, name) for name in SyncCounts.model_fields}
        )

    def tally(self, marks: set[SyncChange], *, customer: bool) -> None:
        """Count one record by what the run did to it (its marks; nothing when none): a
        customer or a subscription added, else unassociated / ended, else updated; and a
        subscription's licence count."""
        if not marks:
            return
        self.records_written += 1
        if customer:
            if SyncChange.ADDED in marks:
                self.customers_added += 1
            elif SyncChange.UNASSOCIATED in marks:
                self.customers_unassociated += 1
            else:
                self.customers_updated += 1
            return
        if SyncChange.ADDED in marks:
            self.subscriptions_added += 1
        elif SyncChange.ENDED in marks:
            self.subscriptions_ended += 1
        elif SyncChange.UPDATED in marks:
            self.subscriptions_updated += 1
        if SyncChange.LICENCES in marks:
            self.licences_updated += 1


class SyncError(BaseModel):
    """One thing a run could not do, and the customer it concerns."""

    customer_id: str | None = None
    tenant_id: str | None = None
    customer_name: str | None = None
    message: str
    at: AwareDatetime


class _Errors(Timestamped):
    """A run's or a chunk's error lines (the first MAX_ERRORS_KEPT) and their total."""

    errors: list[SyncError] = Field(default_factory=list)
    errors_total: int = 0

    def add_error(self, error: SyncError) -> None:
        """Count an error; keep it while fewer than MAX_ERRORS_KEPT are kept."""
        self.errors_total += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(error)


class SyncRun(_Errors):
    """One sync of one reseller (table `SyncRuns`)."""

    reseller: str
    id: str = Field(default_factory=new_id)
    kind: SyncKind
    trigger: SyncTrigger
    requested_by: str | None = None  # the user's e-mail for Sync now; None for the timer
    status: SyncStatus = SyncStatus.QUEUED
    queued_at: AwareDatetime
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    # The audit window this run reads (delta) and the watermark the next delta starts from:
    # the moment the run started reading Partner Center (`audit_until`).
    audit_since: AwareDatetime | None = None
    audit_until: AwareDatetime | None = None
    # Checkpoint of the customer phase: done once the chunks are written.
    chunks_total: int | None = None
    chunks_done: int = 0
    chunks_failed: int = 0
    # Chunk messages sent so far (None: all of them, as runs before this field): the customer
    # phase sends them over several transactions, and a redelivery sends the rest.
    chunks_sent: int | None = None
    counts: SyncCounts = Field(default_factory=SyncCounts)
    failure_reason: str | None = None
    # When the watchdog re-sent the run's pending messages (it does so once, then fails it).
    nudged_at: AwareDatetime | None = None
    # Customers whose reads failed (the first MAX_FAILED_KEPT; the total is counted): the next
    # delta refreshes them; with more than are kept, the next nightly run is Full.
    failed_customers: list[str] = Field(default_factory=list)
    failed_customers_total: int = 0

    def add_failed(self, customer_ids: list[str]) -> None:
        """Count customers not refreshed; keep their ids while fewer than MAX_FAILED_KEPT."""
        for cid in customer_ids:
            if cid in self.failed_customers:
                continue
            self.failed_customers_total += 1
            if len(self.failed_customers) < MAX_FAILED_KEPT:
                self.failed_customers.append(cid)

    @property
    def failed_customers_lost(self) -> bool:
        """More customers failed than the run kept: the next run cannot name them all."""
        return self.failed_customers_total > len(self.failed_customers)


class ChunkStatus(StrEnum):
    """A chunk is worked on until it is done, or has failed for good."""

    PENDING = "Pending"
    DONE = "Done"
    FAILED = "Failed"


class ChunkCustomer(BaseModel):
    """One customer a chunk refreshes: everything, or its licence counts only.

    Stored compactly (`<customer id> <tenant id> <flags>`, flags `L` licences only, `N` new):
    a chunk of 250 with field names spelled out would pass Table Storage's 64 KiB per property.
    """

    model_config = ConfigDict(frozen=True)

    customer_id: str
    tenant_id: str
    licences_only: bool = False
    new: bool = False  # added by this run: it has no subscription records to compare with

    @model_serializer(mode="plain", when_used="json")
    def _compact(self) -> str:
        flags = ("L" if self.licences_only else "") + ("N" if self.new else "")
        return f"{self.customer_id} {self.tenant_id} {flags}".rstrip()

    @model_validator(mode="before")
    @classmethod
    def _from_compact(cls, data: Any) -> Any:
        if isinstance(data, str):
            customer_id, tenant_id, *rest = data.split(" ")
            flags = rest[0] if rest else ""
            return {
                "customer_id": customer_id,
                "tenant_id": tenant_id,
                "licences_only": "L" in flags,
                "new": "N" in flags,
            }
        return data


class SyncChunk(_Errors):
    """A page of customers of a run (table `SyncChunks`: run id, `chunk_row_key(number)`)."""

    run_id: str
    reseller: str
    number: int = Field(ge=0)
    customers: list[ChunkCustomer]
    position: int = 0  # the checkpoint: customers[:position] are done
    status: ChunkStatus = ChunkStatus.PENDING
    counts: SyncCounts = Field(default_factory=SyncCounts)
    failure_reason: str | None = None
    # Every customer of the chunk whose reads failed (all of them, unlike the error lines).
    failed_customers: list[str] = Field(default_factory=list)


class SyncMessage(WireModel):
    """A `sync-reseller` message: the run's customer phase (`chunk` None) or one chunk."""

    reseller: str
    run_id: str
    chunk: int | None = None
    message_id: str | None = None

    def body(self) -> dict[str, Any]:
        """The queue body (ids only: the records hold the data)."""
        return self.model_dump(by_alias=True, exclude_none=True, exclude={"message_id"})


@dataclass(frozen=True)
class AuditEvent:
    """One Partner Center audit record, in our words: what happened to which customer."""

    id: str
    at: datetime
    customer_tenant_id: str | None  # Partner Center's `customerId` (the tenant id)
    resource_type: str  # customer, order, subscription, … (lower-case, as Partner Center)
    operation: str  # add_customer, create_order, update_subscription, … (lower-case)
    resource_id: str | None = None


def sync_row_key(run_id: str) -> str:
    """The RowKey of a run: newest first, as orders."""
    return order_row_key(run_id)


def chunk_row_key(number: int) -> str:
    """The RowKey of a chunk: its number, zero-padded so rows sort in order."""
    return f"{number:06d}"


def licence_slice(customer_id: str, day: datetime, days: int) -> bool:
    """Whether the rotating licence refresh of `day` includes this customer: each customer's
    licences are read once every `days` days (its slice is a stable hash of its id)."""
    if days <= 1:
        return True
    digest = int.from_bytes(hashlib.sha256(customer_id.encode()).digest()[:8], "big")
    epoch_day = int(day.timestamp() // 86400)
    return digest % days == epoch_day % days

"""The daily import of Azure usage from Partner Center's export (shared/domain/usage_report.py).

`begin` (the timer, or a distributor admin) queues a run per billing month; the `usage-import`
queue then carries it step by step, each step idempotent and none sleeping:

- start: POST the export, record the operation, poll it later;
- poll: running → poll again later; failed → the record is Failed with Partner Center's
  reason (the next day's timer starts anew); succeeded → record the manifest, import blob 0;
- blob i: sum the blob's lines per customer and grain, upsert them under the run's tag, mark
  the blob done, go on with blob i+1 (or finish); a redelivered blob rewrites the same rows;
- finish: once every blob is in, flip the month's `active_tag` to this run's, then delete the
  rows of older tags.

Messages of an older run (another `run_id`) change nothing. A crash between two writes leaves
the record where redelivery picks it up; a run that stops moving is restarted by the next
`begin` after `stuck_after`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from pydantic import AwareDatetime, Field

from shared.domain.customers import Customer
from shared.domain.errors import UpstreamRejected
from shared.domain.failures import Failure
from shared.domain.identity import RESELLER_PARTITION, Reseller
from shared.domain.model import WireModel
from shared.domain.outbox import OutboxMessage, Queue
from shared.domain.usage import (
    BillingPeriod,
    UnbilledUsageExport,
    UsageExportFailed,
    UsageExportOperation,
    UsageExportRunning,
    UsageExportSucceeded,
    UsageManifest,
)
from shared.domain.usage_report import (
    IMPORTS_PARTITION,
    MAX_ERRORS,
    MAX_UNKNOWN_TENANTS,
    Owner,
    UsageAggregate,
    UsageImport,
    UsageImportMessage,
    UsageImportStatus,
    UsageStep,
    aggregate,
    blob_key,
    rows_partition,
    tag_of,
)
from shared.ports import AzureUsageExports, Clock, Repository, StepScheduler, UsageRows

log = logging.getLogger(__name__)


@dataclass
class UsagePolicy:
    """How imports run (from the settings)."""

    currency: str = "EUR"  # the partner's billing currency (USAGE_BILLING_CURRENCY)
    poll_seconds: float = 60.0  # between two reads of a running export (USAGE_POLL_SECONDS)
    # On the first days of a month the last one is imported too (it is billed days later).
    last_month_days: int = 5
    stuck_after: timedelta = timedelta(hours=6)


@dataclass
class UsageBook:
    """The records the usage import and report work on."""

    imports: Repository[UsageImport]
    rows: UsageRows
    customers: Repository[Customer]
    resellers: Repository[Reseller]
    clock: Clock
    scheduler: StepScheduler
    policy: UsagePolicy
    # Tests only: called after a step's first write ("blob-rows", "blob", "finish").
    after_step: Callable[[str], None] | None = None

    def _after(self, step: str) -> None:
        if self.after_step is not None:
            self.after_step(step)


def month_of(day: date) -> str:
    """YYYY-MM."""
    return f"{day.year:04d}-{day.month:02d}"


def period_month(period: BillingPeriod, now: datetime) -> str:
    """The month an unbilled period stands for at `now`."""
    first = now.date().replace(day=1)
    return month_of(first if period is BillingPeriod.CURRENT else first - timedelta(days=1))


def due_periods(now: datetime, policy: UsagePolicy) -> list[BillingPeriod]:
    """The current month, and the last one on the first `last_month_days` days of a month."""
    periods = [BillingPeriod.CURRENT]
    if now.day <= policy.last_month_days:
        periods.append(BillingPeriod.LAST)
    return periods


def _message(record: UsageImport, step: UsageStep, blob: int | None = None) -> dict[str, object]:
    return UsageImportMessage(step=step, month=record.month, run_id=record.run_id, blob=blob).body()


def begin(book: UsageBook, periods: list[BillingPeriod] | None = None) -> list[UsageImport]:
    """Queue a run for each period (default: the due ones); a month whose run is still moving
    keeps it. The records, as they are now."""
    now = book.clock.now()
    result = []
    for period in periods or due_periods(now, book.policy):
        month = period_month(period, now)
        record = book.imports.find(IMPORTS_PARTITION, month)
        if record is not None and record.status.in_flight:
            if now - record.updated_at < book.policy.stuck_after:
                result.append(record)
                continue
            log.warning("usage import of %s stopped moving in %s; restarted", month, record.status)
        result.append(_queue_run(book, record, month, period, now))
    return result


def _queue_run(
    book: UsageBook, record: UsageImport | None, month: str, period: BillingPeriod, now: datetime
) -> UsageImport:
    fresh = UsageImport(
        month=month, period=period, currency=book.policy.currency, started_at=now, updated_at=now
    )
    if record is None:
        return book.imports.add(fresh, messages=[_start_message(fresh)])
    stale = list(record.stale_tags)
    if record.tag and record.tag != record.active_tag and record.tag not in stale:
        stale.append(record.tag)  # rows of a run that never finished
    fresh.etag = record.etag
    fresh.active_tag = record.active_tag
    fresh.active_manifest_id = record.active_manifest_id
    fresh.imported_at = record.imported_at
    fresh.stale_tags = stale
    return book.imports.update(fresh, messages=[_start_message(fresh)])


def _start_message(record: UsageImport) -> OutboxMessage:
    return OutboxMessage(queue=Queue.USAGE_IMPORT, body=_message(record, UsageStep.START))


def handle(book: UsageBook, usage: AzureUsageExports, msg: UsageImportMessage) -> None:
    """Run one step; a message of another run, or of a step already done, changes nothing."""
    record = book.imports.find(IMPORTS_PARTITION, msg.month)
    if record is None or record.run_id != msg.run_id:
        log.info("usage import %s of %s: not the current run; ignored", msg.run_id, msg.month)
        return
    if msg.step is UsageStep.START:
        _start(book, usage, record)
    elif msg.step is UsageStep.POLL:
        _poll(book, usage, record)
    elif msg.step is UsageStep.BLOB:
        _blob(book, usage, record, msg.blob or 0)
    else:
        _finish(book, record)


def _send(
    book: UsageBook,
    record: UsageImport,
    step: UsageStep,
    *,
    blob: int | None = None,
    delay: float = 0,
) -> None:
    book.scheduler.send_later(Queue.USAGE_IMPORT, _message(record, step, blob), delay)


def _save(book: UsageBook, record: UsageImport) -> UsageImport:
    record.updated_at = book.clock.now()
    return book.imports.update(record)


def _operation(record: UsageImport) -> UsageExportOperation:
    if not record.operation_id or not record.operation_location:
        raise RuntimeError(f"usage import of {record.month} has no export operation on record")
    return UsageExportOperation(id=record.operation_id, location=record.operation_location)


def _start(book: UsageBook, usage: AzureUsageExports, record: UsageImport) -> None:
    if record.status is UsageImportStatus.QUEUED:
        operation = usage.start_usage_export(
            UnbilledUsageExport(period=record.period, currency=record.currency)
        )
        record.operation_id, record.operation_location = operation.id, operation.location
        record.status = UsageImportStatus.EXPORTING
        record = _save(book, record)
    if record.status is UsageImportStatus.EXPORTING:
        # Also on redelivery: the crash may have come before the poll was sent.
        _send(book, record, UsageStep.POLL, delay=book.policy.poll_seconds)


def _fail(book: UsageBook, record: UsageImport, reason: str) -> None:
    record.status = UsageImportStatus.FAILED
    record.failure_reason = reason
    record.errors = [*record.errors, reason][-MAX_ERRORS:]
    record.finished_at = book.clock.now()
    _save(book, record)
    log.error("usage import of %s failed: %s", record.month, reason)


def _poll(book: UsageBook, usage: AzureUsageExports, record: UsageImport) -> None:
    if record.status is not UsageImportStatus.EXPORTING:
        return
    status = usage.usage_export_status(_operation(record))
    if isinstance(status, UsageExportRunning):
        wait = status.retry_after_seconds or book.policy.poll_seconds
        _send(book, record, UsageStep.POLL, delay=max(wait, 1.0))
        return
    if isinstance(status, UsageExportFailed):
        code = f" (code {status.code})" if status.code else ""
        _fail(book, record, f"Partner Center's usage export failed: {status.reason}{code}")
        return
    manifest = status.manifest
    if manifest.billing_month not in (None, record.month):
        _fail(book, record, f"the export holds {manifest.billing_month}, not {record.month}")
        return
    record.manifest_id, record.manifest_etag = manifest.id, manifest.etag
    record.tag = tag_of(f"{record.month}:{manifest.etag}")
    record.blob_count, record.blobs_done = manifest.blob_count, []
    record.status = UsageImportStatus.IMPORTING
    record = _save(book, record)
    _next(book, record, -1)


def _next(book: UsageBook, record: UsageImport, done: int) -> None:
    if done + 1 < record.blob_count:
        _send(book, record, UsageStep.BLOB, blob=done + 1)
    else:
        _send(book, record, UsageStep.FINISH)


def _manifest(usage: AzureUsageExports, record: UsageImport) -> UsageManifest:
    """The run's manifest, read again from its operation (no SAS token is kept at rest)."""
    status = usage.usage_export_status(_operation(record))
    if not isinstance(status, UsageExportSucceeded) or status.manifest.etag != record.manifest_etag:
        raise UpstreamRejected(
            f"the usage export of {record.month} no longer gives the manifest it gave "
            f"({record.manifest_id}); the next import starts a new one"
        )
    return status.manifest


def tenant_owners(book: UsageBook) -> dict[str, Owner]:
    """Customer tenant id (lower-case) → its reseller and customer, from the customers' tenant
    claims (one range query per reseller)."""
    owners: dict[str, Owner] = {}
    for reseller in book.resellers.iterate(RESELLER_PARTITION):
        for claim, customer_id in book.customers.claims(reseller.slug, "tenant"):
            owners[claim.value.strip().lower()] = Owner(reseller.slug, customer_id)
    return owners


def _blob(book: UsageBook, usage: AzureUsageExports, record: UsageImport, index: int) -> None:
    if record.status is not UsageImportStatus.IMPORTING or index >= record.blob_count:
        return
    if index not in record.blobs_done:
        manifest = _manifest(usage, record)
        blob = manifest.blobs[index]
        sums = aggregate(usage.usage_lines(manifest, blob), tenant_owners(book))
        by_reseller: dict[str, list[tuple[str, UsageAggregate]]] = {}
        for row in sums.rows:
            by_reseller.setdefault(row.reseller, []).append((row.row_key(blob_key(blob.name)), row))
        assert record.tag is not None
        for reseller, rows in sorted(by_reseller.items()):
            book.rows.upsert(rows_partition(reseller, record.month, record.tag), rows)
        book._after("blob-rows")
        if sums.skipped:
            log.warning(
                "usage import of %s, blob %s: %d line(s) of %d tenant(s) no customer on record "
                "claims were skipped",
                record.month,
                blob.name,
                sums.skipped,
                len(sums.unknown_tenants),
            )
        record.blobs_done = [*record.blobs_done, index]
        record.lines += sums.lines
        record.skipped_lines += sums.skipped
        unknown = dict.fromkeys([*record.unknown_tenants, *sums.unknown_tenants])
        record.unknown_tenants = list(unknown)[:MAX_UNKNOWN_TENANTS]
        record = _save(book, record)
        book._after("blob")
    _next(book, record, index)


def _finish(book: UsageBook, record: UsageImport) -> None:
    if record.status is UsageImportStatus.IMPORTING:
        missing = set(range(record.blob_count)) - set(record.blobs_done)
        if missing:
            raise RuntimeError(f"usage import of {record.month}: blobs {sorted(missing)} not in")
        stale = [t for t in record.stale_tags if t != record.tag]
        if record.active_tag and record.active_tag != record.tag and record.active_tag not in stale:
            stale.append(record.active_tag)
        now = book.clock.now()
        record.active_tag, record.active_manifest_id = record.tag, record.manifest_id
        record.imported_at = record.finished_at = now
        record.stale_tags = stale
        record.status = UsageImportStatus.SUCCEEDED
        record = _save(book, record)
        book._after("finish")
        log.info(
            "usage import of %s: %d line(s) in %d blob(s), %d skipped",
            record.month,
            record.lines,
            record.blob_count,
            record.skipped_lines,
        )
    if record.status is UsageImportStatus.SUCCEEDED and record.stale_tags:
        resellers = [r.slug for r in book.resellers.iterate(RESELLER_PARTITION)]
        for tag in record.stale_tags:
            if tag != record.active_tag:
                for slug in resellers:
                    book.rows.drop(rows_partition(slug, record.month, tag))
        record.stale_tags = []
        _save(book, record)


def give_up(book: UsageBook, msg: UsageImportMessage, failure: Failure) -> None:
    """Record a step that failed for good (the next day's timer starts the month anew)."""
    record = book.imports.find(IMPORTS_PARTITION, msg.month)
    if record is None or record.run_id != msg.run_id or not record.status.in_flight:
        return
    _fail(book, record, f"{msg.step.value}: {failure.reason}")


class UsageImportPublic(WireModel):
    """An import as distributor admins read it."""

    month: str
    period: BillingPeriod
    currency: str
    status: UsageImportStatus
    run_id: str
    manifest_id: str | None
    blob_count: int
    blobs_done: int
    lines: int
    skipped_lines: int = Field(description="Lines of tenants no customer on record claims.")
    unknown_tenants: list[str] = Field(description="Some of those tenants' ids.")
    errors: list[str]
    failure_reason: str | None
    started_at: AwareDatetime
    updated_at: AwareDatetime
    finished_at: AwareDatetime | None
    imported_at: AwareDatetime | None = Field(description="When the data the report reads came.")


def present(record: UsageImport) -> UsageImportPublic:
    """The import's public view."""
    data = record.model_dump()
    data["blobs_done"] = len(set(record.blobs_done))
    return UsageImportPublic.model_validate(data)


def list_imports(book: UsageBook) -> list[UsageImportPublic]:
    """Every month's import, newest month first."""
    records = sorted(book.imports.iterate(IMPORTS_PARTITION), key=lambda r: r.month, reverse=True)
    return [present(r) for r in records]

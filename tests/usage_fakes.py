"""An in-memory Azure usage export (the `AzureUsageExports` half of the PartnerCenter port).

It answers and fails like `shared/adapters/partner_center/usage.py` against the simulator:
an operation is `running` for `running_polls` reads, then succeeded with a manifest of blobs of
`lines_per_blob` lines, or failed (`failure`, or "No data available" (5000) for a currency other
than `billing_currency`, or an unknown invoice); the same lines give the same manifest etag; a
location outside Graph is refused (UpstreamRejected) and an unknown one is NotFound; a blob not
in its manifest is NotFound, and one read after `expire_blobs()` raises UsageExportExpired.
`fail_next` raises its exceptions, one per call, first (e.g. UpstreamUnavailable for a 429 that
outlasted the retries).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from shared.domain.errors import NotFound, UpstreamRejected
from shared.domain.money import Money
from shared.domain.usage import (
    BilledUsageExport,
    BillingPeriod,
    UnbilledUsageExport,
    UsageBlobRef,
    UsageExportExpired,
    UsageExportFailed,
    UsageExportOperation,
    UsageExportRunning,
    UsageExportStatus,
    UsageExportSucceeded,
    UsageLine,
    UsageManifest,
)

GRAPH = "https://graph.microsoft.com/v1.0"
OPERATIONS = f"{GRAPH}/reports/partners/billing/operations"
BLOBS = "https://usage.blob.core.windows.net/v1"


def month_of(day: date) -> str:
    """YYYY-MM."""
    return f"{day.year:04d}-{day.month:02d}"


def usage_line(
    subscription_id: str = "sub-1",
    day: date = date(2026, 10, 4),
    *,
    customer: str = "tenant-1",
    meter_category: str = "Virtual Machines",
    resource_group: str = "rg-web",
    quantity: str = "2",
    unit_price: str = "0.5",
    currency: str = "EUR",
) -> UsageLine:
    """A usage line (billing total = quantity × unit price, no exchange)."""
    start = datetime(day.year, day.month, 1, tzinfo=UTC)
    total = Decimal(quantity) * Decimal(unit_price)
    return UsageLine(
        customer_tenant_id=customer,
        subscription_id=subscription_id,
        meter_category=meter_category,
        resource_group=resource_group,
        usage_date=day,
        charge_start=start,
        charge_end=start + timedelta(days=27),
        quantity=Decimal(quantity),
        unit_price=Money.of(unit_price, currency),
        effective_unit_price=Money.of(unit_price, currency),
        pricing_pre_tax_total=Money.of(total, currency),
        billing_pre_tax_total=Money.of(total, currency),
    )


@dataclass
class _Export:
    month: str | None
    currency: str
    polls: int = 0
    manifest: UsageManifest | None = None


@dataclass
class FakeAzureUsage:
    """Usage per billing month (`usage["2026-10"] = [UsageLine, …]`), exported on request."""

    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    usage: dict[str, list[UsageLine]] = field(default_factory=dict)
    invoices: dict[str, str] = field(default_factory=dict)  # invoice id → billing month
    billing_currency: str = "EUR"
    running_polls: int = 1
    lines_per_blob: int = 1000
    failure: str = ""
    fail_next: list[Exception] = field(default_factory=list)
    exports: dict[str, _Export] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    _expired: set[str] = field(default_factory=set)
    _frozen: dict[str, list[UsageLine]] = field(default_factory=dict)  # manifest id → lines

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.fail_next:
            raise self.fail_next.pop(0)

    def start_usage_export(
        self, request: UnbilledUsageExport | BilledUsageExport
    ) -> UsageExportOperation:
        """Like POST …/usage/{unbilled|billed}/export."""
        self._call("start_usage_export")
        if isinstance(request, UnbilledUsageExport):
            this = self.now().date().replace(day=1)
            first = (
                this
                if request.period is BillingPeriod.CURRENT
                else ((this - timedelta(days=1)).replace(day=1))
            )
            export = _Export(month_of(first), request.currency)
        else:
            export = _Export(self.invoices.get(request.invoice_id), self.billing_currency)
        operation_id = str(uuid.uuid4())
        self.exports[operation_id] = export
        return UsageExportOperation(id=operation_id, location=f"{OPERATIONS}/{operation_id}")

    def usage_export_status(self, operation: UsageExportOperation) -> UsageExportStatus:
        """Like GET of the operation: running, then succeeded or failed."""
        self._call("usage_export_status")
        if not operation.location.startswith(GRAPH + "/"):
            raise UpstreamRejected(f"usage export: {operation.location} is not under {GRAPH}")
        export = self.exports.get(operation.location.rsplit("/", 1)[-1])
        if export is None:
            raise NotFound("Microsoft Graph: the operation was not found")
        if export.manifest is not None:
            return UsageExportSucceeded(manifest=export.manifest)
        export.polls += 1
        if export.polls <= self.running_polls:
            return UsageExportRunning(retry_after_seconds=1)
        if self.failure:
            return UsageExportFailed(code="500", reason=self.failure)
        if export.month is None or export.currency != self.billing_currency:
            return UsageExportFailed(code="5000", reason="No data available")
        export.manifest = self._manifest(export.month)
        return UsageExportSucceeded(manifest=export.manifest)

    def _manifest(self, month: str) -> UsageManifest:
        lines = [line for line in self.usage.get(month, []) if line.billing_month == month]
        etag = hashlib.sha256(
            "".join(line.model_dump_json() for line in lines).encode()
        ).hexdigest()[:20]
        manifest_id = str(uuid.uuid4())
        # The blobs hold the data as it was when the export finished.
        self._frozen[manifest_id] = lines
        size = max(1, self.lines_per_blob)
        blobs = tuple(
            UsageBlobRef(name=f"part-{i:05d}-{etag}.json.gz", partition_value="default")
            for i in range((len(lines) + size - 1) // size)
        )
        return UsageManifest(
            id=manifest_id,
            etag=etag,
            created=self.now(),
            billing_month=month,
            root_directory=f"{BLOBS}/BillingMonth={month.replace('-', '')}/{manifest_id}",
            sas_token=f"se=later&sig={manifest_id}",
            blob_count=len(blobs),
            blobs=blobs,
        )

    def usage_lines(self, manifest: UsageManifest, blob: UsageBlobRef) -> Iterator[UsageLine]:
        """Like reading a blob: its lines, lazily."""
        self._call("usage_lines")
        if blob not in manifest.blobs:
            raise NotFound(f"usage blob {blob.name} is not in manifest {manifest.id}")
        if manifest.id in self._expired or manifest.sas_token != f"se=later&sig={manifest.id}":
            raise UsageExportExpired("usage blob: access refused (AuthenticationFailed)")
        index = manifest.blobs.index(blob)
        size = max(1, self.lines_per_blob)
        lines = self._frozen.get(manifest.id, [])
        return iter(lines[index * size : (index + 1) * size])

    def expire_blobs(self) -> None:
        """Every SAS token handed out so far expires (as after `usageSasMinutes`)."""
        self._expired.update(e.manifest.id for e in self.exports.values() if e.manifest is not None)

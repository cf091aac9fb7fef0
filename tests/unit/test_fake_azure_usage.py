"""The in-memory usage export answers and fails like the real client against the simulator."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from shared.domain.errors import NotFound, UpstreamRejected, UpstreamUnavailable
from shared.domain.usage import (
    BilledUsageExport,
    BillingPeriod,
    UnbilledUsageExport,
    UsageBlobRef,
    UsageExportExpired,
    UsageExportFailed,
    UsageExportOperation,
    UsageExportRunning,
    UsageExportSucceeded,
    UsageManifest,
)
from tests.usage_fakes import FakeAzureUsage, usage_line

NOW = datetime(2026, 11, 20, 8, tzinfo=UTC)


def fake(**knobs: object) -> FakeAzureUsage:
    usage = FakeAzureUsage(now=lambda: NOW, lines_per_blob=2, **knobs)  # type: ignore[arg-type]
    usage.usage["2026-10"] = [usage_line("s1", date(2026, 10, d)) for d in range(1, 6)]
    usage.usage["2026-11"] = [usage_line("s1", date(2026, 11, 1))]
    return usage


def export(usage: FakeAzureUsage, period: BillingPeriod = BillingPeriod.LAST) -> UsageManifest:
    operation = usage.start_usage_export(UnbilledUsageExport(period=period, currency="EUR"))
    status = usage.usage_export_status(operation)
    while isinstance(status, UsageExportRunning):
        status = usage.usage_export_status(operation)
    assert isinstance(status, UsageExportSucceeded)
    return status.manifest


def test_last_period_is_the_previous_calendar_month_split_into_blobs() -> None:
    usage = fake()
    operation = usage.start_usage_export(
        UnbilledUsageExport(period=BillingPeriod.LAST, currency="EUR")
    )

    assert isinstance(usage.usage_export_status(operation), UsageExportRunning)
    manifest = export(usage)
    lines = [line for blob in manifest.blobs for line in usage.usage_lines(manifest, blob)]

    assert manifest.billing_month == "2026-10"
    assert manifest.blob_count == 3
    assert sum(line.billing_pre_tax_total.amount for line in lines) == Decimal("5.0")
    assert export(usage, BillingPeriod.CURRENT).billing_month == "2026-11"


def test_unchanged_data_keeps_its_etag_and_changed_data_gets_a_new_one() -> None:
    usage = fake()
    first = export(usage)
    same = export(usage)
    usage.usage["2026-10"].append(usage_line("s2", date(2026, 10, 9)))

    assert first.etag == same.etag
    assert export(usage).etag != first.etag
    # A blob holds the data of its own export, not what came later.
    assert sum(1 for b in first.blobs for _ in usage.usage_lines(first, b)) == 5


def test_fake_fails_like_the_client() -> None:
    usage = fake()
    manifest = export(usage)

    with pytest.raises(NotFound):
        usage.usage_lines(manifest, UsageBlobRef(name="other"))
    with pytest.raises(UpstreamRejected):
        usage.usage_export_status(UsageExportOperation(id="x", location="https://evil/x"))
    with pytest.raises(NotFound):
        usage.usage_export_status(
            UsageExportOperation(id="x", location="https://graph.microsoft.com/v1.0/op/x")
        )
    usage.expire_blobs()
    with pytest.raises(UsageExportExpired):
        usage.usage_lines(manifest, manifest.blobs[0])
    usage.fail_next.append(UpstreamUnavailable("429 for too long", retry_after=30))
    with pytest.raises(UpstreamUnavailable):
        export(usage)


def test_no_data_and_failures_are_failed_operations() -> None:
    usage = fake(running_polls=0)
    other_currency = usage.usage_export_status(
        usage.start_usage_export(UnbilledUsageExport(period=BillingPeriod.LAST, currency="USD"))
    )
    unknown_invoice = usage.usage_export_status(
        usage.start_usage_export(BilledUsageExport(invoice_id="G1"))
    )
    usage.failure = "Internal error"
    failed = usage.usage_export_status(
        usage.start_usage_export(UnbilledUsageExport(period=BillingPeriod.LAST, currency="EUR"))
    )

    assert other_currency == UsageExportFailed(code="5000", reason="No data available")
    assert unknown_invoice == UsageExportFailed(code="5000", reason="No data available")
    assert isinstance(failed, UsageExportFailed) and failed.reason == "Internal error"

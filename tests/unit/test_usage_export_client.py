"""The Azure usage client against httpx.MockTransport, and the mapping of a usage line."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from shared.adapters.partner_center.transport import PartnerCenterTransport, RetryPolicy
from shared.adapters.partner_center.usage import (
    AzureUsageClient,
    NoCredentials,
    WireManifest,
    manifest_from_wire,
    storage_http,
    usage_line,
)
from shared.domain.errors import NotFound, UpstreamRejected
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

GRAPH = "https://graph.example/v1.0"
ROOT = "https://blobs.example/usage/v1/PartnerTenantId=t/BillingMonth=202610/PartitionType=default"

LINE: dict[str, Any] = {
    "CustomerId": "c-1",
    "CustomerName": "Contoso s.r.o.",
    "SubscriptionId": "s-1",
    "EntitlementId": "azure-1",
    "Tier2MpnId": "7654321",
    "ProductId": "DZH318Z0BPS6",
    "MeterCategory": "Virtual Machines",
    "MeterSubCategory": "Dsv3 Series",
    "MeterName": "D2s v3",
    "ResourceGroup": "rg-web",
    "ResourceLocation": "westeurope",
    "UsageDate": "2026-10-04T00:00:00Z",
    "ChargeStartDate": "2026-10-01T00:00:00",
    "ChargeEndDate": "2026-10-31T00:00:00Z",
    "Quantity": 0.1,
    "UnitPrice": 0.096,
    "EffectiveUnitPrice": 0.0816,
    "PricingPreTaxTotal": 0.00816,
    "PricingCurrency": "USD",
    "PCToBCExchangeRate": 0.92,
    "BillingPreTaxTotal": 0.0075072,
    "BillingCurrency": "EUR",
}


def jsonl_gz(*lines: dict[str, Any]) -> bytes:
    return gzip.compress(b"".join(json.dumps(line).encode() + b"\n" for line in lines))


def parsed(line: dict[str, Any]) -> dict[str, Any]:
    # As the client reads a blob: floats as exact decimals.
    loaded: dict[str, Any] = json.loads(json.dumps(line), parse_float=Decimal)
    return loaded


class Tokens:
    def access_token(self, scope: str, *, user: bool = False) -> str:
        return f"token-for-{scope}"

    def forget(self, scope: str, *, user: bool = False) -> None:
        pass


def usage_client(
    graph: Callable[[httpx.Request], httpx.Response],
    storage: Callable[[httpx.Request], httpx.Response],
    sleeps: list[float] | None = None,
) -> AzureUsageClient:
    waits = sleeps if sleeps is not None else []
    retry = RetryPolicy(max_attempts=3, backoff_base_seconds=0.01)
    return AzureUsageClient(
        PartnerCenterTransport(
            httpx.Client(transport=httpx.MockTransport(graph)),
            Tokens(),
            retry=retry,
            sleep=waits.append,
        ),
        PartnerCenterTransport(
            storage_http(httpx.Client(transport=httpx.MockTransport(storage))),
            NoCredentials(),
            retry=retry,
            sleep=waits.append,
        ),
        graph_base_url=GRAPH,
        scope="https://graph.example/.default",
    )


def manifest(*names: str) -> UsageManifest:
    return UsageManifest(
        id="m-1",
        etag="e-1",
        created=datetime(2026, 11, 1, tzinfo=UTC),
        billing_month="2026-10",
        root_directory=ROOT,
        sas_token="sv=2021&se=2026-11-01T01%3A00%3A00Z&sig=abc",
        blob_count=len(names),
        blobs=tuple(UsageBlobRef(name=n, partition_value="default") for n in names),
    )


def unexpected(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"unexpected request {request.url}")


# ----------------------------------------------------------------- mapping


def test_a_usage_line_keeps_exact_decimals_and_both_currencies() -> None:
    line = usage_line(parsed(LINE))

    assert line.quantity == Decimal("0.1")
    assert line.unit_price.amount == Decimal("0.096")
    assert line.unit_price.currency == "USD"
    assert line.billing_pre_tax_total.amount == Decimal("0.0075072")
    assert line.currency == "EUR"
    assert line.exchange_rate == Decimal("0.92")
    assert line.usage_date == date(2026, 10, 4)
    assert line.charge_start == datetime(2026, 10, 1, tzinfo=UTC)  # naive means UTC
    assert line.reseller_mpn_id == "7654321"
    assert line.billing_month == "2026-10"


def test_a_usage_line_reads_attribute_names_in_any_letter_case_and_numbers_as_text() -> None:
    camel = {k[0].lower() + k[1:]: v for k, v in LINE.items()}
    camel["quantity"] = "2.5"

    line = usage_line(camel)

    assert line.quantity == Decimal("2.5")
    assert line.meter_category == "Virtual Machines"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("BillingPreTaxTotal", None, "BillingPreTaxTotal is missing"),
        ("Quantity", "lots", "Quantity is not a number"),
        ("UsageDate", "yesterday", "UsageDate is not a date"),
        ("BillingCurrency", "euro", "currency"),
        ("CustomerId", "", "customer_tenant_id"),
    ],
)
def test_a_usage_line_without_what_the_report_needs_is_rejected_naming_the_field(
    field: str, value: Any, message: str
) -> None:
    broken = dict(LINE)
    if value is None:
        del broken[field]
    else:
        broken[field] = value

    with pytest.raises(UpstreamRejected, match=message):
        usage_line(broken)


def test_a_manifest_takes_its_billing_month_from_the_root_directory() -> None:
    wire = WireManifest.model_validate(
        {
            "id": "m",
            "eTag": "e",
            "createdDateTime": "2023-03-09T06:34:34.87Z",
            "rootDirectory": ROOT,
            "sasToken": "sig=x",
            "blobCount": 1,
            "blobs": [{"name": "part-1.json.gz", "partitionValue": "default"}],
        }
    )

    result = manifest_from_wire(wire)

    assert result.billing_month == "2026-10"
    assert result.import_key(result.blobs[0]) == "2026-10:e:part-1.json.gz"


def test_a_manifest_whose_blob_count_disagrees_with_its_blobs_is_refused() -> None:
    with pytest.raises(ValueError, match="blobCount"):
        UsageManifest(
            id="m",
            etag="e",
            created=datetime(2026, 11, 1, tzinfo=UTC),
            root_directory=ROOT,
            sas_token="",
            blob_count=2,
            blobs=(UsageBlobRef(name="a"),),
        )


# ----------------------------------------------------------------- Graph


def test_an_unbilled_export_posts_graphs_body_with_the_graph_token() -> None:
    seen: list[httpx.Request] = []

    def graph(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            202, headers={"Location": f"{GRAPH}/reports/partners/billing/operations/op-1"}
        )

    client = usage_client(graph, unexpected)

    operation = client.start_usage_export(
        UnbilledUsageExport(period=BillingPeriod.LAST, currency="CZK")
    )
    billed = client.start_usage_export(BilledUsageExport(invoice_id="G0123", full_attributes=False))

    assert operation.id == "op-1" and billed.id == "op-1"
    assert str(seen[0].url) == f"{GRAPH}/reports/partners/billing/usage/unbilled/export"
    assert json.loads(seen[0].content) == {
        "currencyCode": "CZK",
        "billingPeriod": "last",
        "attributeSet": "full",
    }
    assert seen[0].headers["Authorization"] == "Bearer token-for-https://graph.example/.default"
    assert str(seen[1].url).endswith("/usage/billed/export")
    assert json.loads(seen[1].content) == {"invoiceId": "G0123", "attributeSet": "basic"}


def test_an_export_answer_pointing_outside_graph_is_refused() -> None:
    client = usage_client(
        lambda r: httpx.Response(202, headers={"Location": "https://evil.example/op"}), unexpected
    )

    with pytest.raises(UpstreamRejected, match="not under"):
        client.start_usage_export(UnbilledUsageExport(period=BillingPeriod.CURRENT, currency="EUR"))


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"status": "running"}, UsageExportRunning),
        ({"status": "notStarted"}, UsageExportRunning),
        ({"status": "somethingNew"}, UsageExportRunning),
        ({"status": "failed", "error": {"code": "5000", "message": "No data"}}, UsageExportFailed),
    ],
)
def test_operation_statuses_map_to_running_or_failed(
    payload: dict[str, Any], expected: type
) -> None:
    client = usage_client(
        lambda r: httpx.Response(200, json=payload, headers={"Retry-After": "7"}), unexpected
    )

    status = client.usage_export_status(UsageExportOperation(id="op", location=f"{GRAPH}/op"))

    assert isinstance(status, expected)
    if isinstance(status, UsageExportRunning):
        assert status.retry_after_seconds == 7
    if isinstance(status, UsageExportFailed):
        assert (status.code, status.reason) == ("5000", "No data")


def test_a_succeeded_operation_with_only_a_manifest_link_reads_the_manifest() -> None:
    wire_manifest = {
        "id": "m",
        "eTag": "e",
        "createdDateTime": "2023-03-09T06:34:34Z",
        "rootDirectory": ROOT,
        "sasToken": "sig=x",
        "blobCount": 0,
        "blobs": [],
    }

    def graph(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/op"):
            link = f"{GRAPH}/reports/partners/billing/manifests/m"
            return httpx.Response(
                200, json={"status": "succeeded", "resourceLocation@odata.navigationLink": link}
            )
        return httpx.Response(200, json=wire_manifest)

    status = usage_client(graph, unexpected).usage_export_status(
        UsageExportOperation(id="op", location=f"{GRAPH}/op")
    )

    assert isinstance(status, UsageExportSucceeded)
    assert status.manifest.etag == "e"


# ----------------------------------------------------------------- blobs


def test_a_blob_is_read_with_the_sas_token_only_and_never_the_bearer_token() -> None:
    seen: list[httpx.Request] = []

    def storage(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=jsonl_gz(LINE, LINE))

    lines = list(
        usage_client(unexpected, storage).usage_lines(
            manifest("a b.gz"), UsageBlobRef(name="a b.gz", partition_value="default")
        )
    )

    assert len(lines) == 2
    assert str(seen[0].url) == f"{ROOT}/a%20b.gz?sv=2021&se=2026-11-01T01%3A00%3A00Z&sig=abc"
    for header in ("authorization", "ms-requestid", "ms-correlationid", "ms-contract-version"):
        assert header not in seen[0].headers


def test_a_blob_cut_off_mid_download_is_downloaded_again() -> None:
    whole = jsonl_gz(LINE, LINE, LINE)
    answers = [whole[: len(whole) // 2], whole]
    sleeps: list[float] = []

    def storage(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=answers.pop(0))

    blob = UsageBlobRef(name="a", partition_value="default")
    lines = list(usage_client(unexpected, storage, sleeps).usage_lines(manifest("a"), blob))

    assert len(lines) == 3
    assert answers == [] and len(sleeps) == 1


def test_a_refused_or_missing_blob_says_what_to_do() -> None:
    def storage(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/gone"):
            return httpx.Response(404, headers={"x-ms-error-code": "BlobNotFound"})
        return httpx.Response(403, headers={"x-ms-error-code": "AuthenticationFailed"})

    client = usage_client(unexpected, storage)
    refs = manifest("expired", "gone")

    with pytest.raises(UsageExportExpired, match="AuthenticationFailed"):
        list(client.usage_lines(refs, refs.blobs[0]))
    with pytest.raises(NotFound, match="BlobNotFound"):
        list(client.usage_lines(refs, refs.blobs[1]))
    with pytest.raises(NotFound):
        list(client.usage_lines(refs, UsageBlobRef(name="not-listed")))


def test_a_bad_line_in_a_blob_is_rejected_naming_the_blob_and_line() -> None:
    broken = dict(LINE, Quantity="n/a")
    client = usage_client(unexpected, lambda r: httpx.Response(200, content=jsonl_gz(LINE, broken)))

    lines = client.usage_lines(manifest("a"), UsageBlobRef(name="a", partition_value="default"))

    assert next(lines).quantity == Decimal("0.1")
    with pytest.raises(UpstreamRejected, match=r"usage blob a line 2: .*Quantity"):
        next(lines)

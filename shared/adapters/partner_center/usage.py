"""Azure usage through Partner Center's asynchronous export (Microsoft Graph partner billing).

`POST {graph}/reports/partners/billing/usage/unbilled/export {currencyCode, billingPeriod,
attributeSet}` (or `…/usage/billed/export {invoiceId, attributeSet}`) answers 202 + Location (the
operation). `GET` the operation: `running`, `succeeded` with `resourceLocation` (the manifest, or
only its `resourceLocation@odata.navigationLink`, which is then read), or `failed` with an error.
The manifest lists gzip JSON-lines blobs at `{rootDirectory}/{name}?{sasToken}`.

Graph calls go through the Partner Center transport (retries, 429/Retry-After, the request
budget) with a token for Graph's audience (`https://graph.microsoft.com/.default`, application
permission PartnerBilling.Read.All). Blob downloads go to the storage host with the SAS token only:
a transport of their own whose HTTP client removes every credential and Partner Center header
before a request leaves, and which spends no Partner Center budget.
"""

from __future__ import annotations

import json
import re
import tempfile
import zlib
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import IO, Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.adapters.partner_center.transport import (
    PartnerCenterTransport,
    error_details,
    retry_after_seconds,
)
from shared.adapters.partner_center.wire import UtcDatetime
from shared.domain.errors import NotFound, UpstreamRejected
from shared.domain.money import Money
from shared.domain.usage import (
    BILLING_MONTH_PATTERN,
    BilledUsageExport,
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

GRAPH_BASE_URL = "https://graph.microsoft.com/v1.0"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
REPORTS = "reports/partners/billing"

# Decompressed blobs stay in memory up to this size, then spill to a temporary file.
_SPOOL_BYTES = 4 * 1024 * 1024
_RUNNING = frozenset({"running", "notstarted", "inprogress", "accepted"})
_SUCCEEDED = frozenset({"succeeded", "completed"})
# Headers that must never reach the blob host: the bearer token above all.
_NOT_FOR_STORAGE = ("authorization", "ms-contract-version", "ms-requestid", "ms-correlationid")


class _Wire(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow")


class WireBlob(_Wire):
    """One entry of `manifest.blobs`."""

    name: str
    partition_value: str = Field("", alias="partitionValue")


class WireManifest(_Wire):
    """Graph's `microsoft.graph.partners.billing.manifest`."""

    id: str
    schema_version: str = Field("", alias="schemaVersion")
    data_format: str = Field("", alias="dataFormat")
    created_date_time: UtcDatetime = Field(alias="createdDateTime")
    etag: str = Field("", alias="eTag")
    partner_tenant_id: str = Field("", alias="partnerTenantId")
    root_directory: str = Field(alias="rootDirectory")
    sas_token: str = Field("", alias="sasToken")
    blob_count: int | None = Field(None, alias="blobCount")
    blobs: list[WireBlob] = []


def manifest_from_wire(wire: WireManifest) -> UsageManifest:
    """Our manifest from Graph's; the billing month from `BillingMonth=YYYYMM` in the root."""
    return UsageManifest(
        id=wire.id,
        etag=wire.etag or wire.id,
        created=wire.created_date_time,
        schema_version=wire.schema_version,
        data_format=wire.data_format or "compressedJSONLines",
        partner_tenant_id=wire.partner_tenant_id,
        billing_month=_billing_month(wire.root_directory),
        root_directory=wire.root_directory,
        sas_token=wire.sas_token,
        blob_count=len(wire.blobs) if wire.blob_count is None else wire.blob_count,
        blobs=tuple(
            UsageBlobRef(name=b.name, partition_value=b.partition_value) for b in wire.blobs
        ),
    )


def _billing_month(root: str) -> str | None:
    for part in root.split("/"):
        key, _, value = part.partition("=")
        if key.lower() == "billingmonth" and len(value) == 6 and value.isdigit():
            month = f"{value[:4]}-{value[4:]}"
            return month if re.match(BILLING_MONTH_PATTERN, month) else None
    return None


# ----------------------------------------------------------------- one line


def usage_line(record: Mapping[str, Any]) -> UsageLine:
    """Our usage line from one JSON line of a blob (attribute names in any letter case).

    UpstreamRejected when a field the report needs is missing or not a number/date.
    """
    raw = {str(k).lower(): v for k, v in record.items()}

    def text(name: str) -> str:
        value = raw.get(name.lower())
        return "" if value is None else str(value)

    billing_currency = text("BillingCurrency").upper()
    pricing_currency = text("PricingCurrency").upper() or billing_currency
    try:
        return UsageLine(
            customer_tenant_id=text("CustomerId"),
            customer_name=text("CustomerName"),
            subscription_id=text("SubscriptionId"),
            entitlement_id=text("EntitlementId"),
            entitlement_description=text("EntitlementDescription"),
            reseller_mpn_id=text("Tier2MpnId"),
            product_id=text("ProductId"),
            sku_id=text("SkuId"),
            charge_type=text("ChargeType"),
            meter_id=text("MeterId"),
            meter_category=text("MeterCategory"),
            meter_subcategory=text("MeterSubCategory"),
            meter_name=text("MeterName"),
            meter_region=text("MeterRegion"),
            resource_group=text("ResourceGroup"),
            resource_location=text("ResourceLocation"),
            resource_uri=text("ResourceURI"),
            unit=text("Unit") or text("UnitType"),
            usage_date=_day(raw.get("usagedate"), "UsageDate"),
            charge_start=_moment(raw.get("chargestartdate"), "ChargeStartDate"),
            charge_end=_moment(raw.get("chargeenddate"), "ChargeEndDate"),
            quantity=_number(raw.get("quantity"), "Quantity"),
            unit_price=Money.of(_number(raw.get("unitprice"), "UnitPrice"), pricing_currency),
            effective_unit_price=Money.of(
                _number(raw.get("effectiveunitprice"), "EffectiveUnitPrice"), pricing_currency
            ),
            pricing_pre_tax_total=Money.of(
                _number(raw.get("pricingpretaxtotal"), "PricingPreTaxTotal"), pricing_currency
            ),
            exchange_rate=_number(raw.get("pctobcexchangerate", 1), "PCToBCExchangeRate"),
            billing_pre_tax_total=Money.of(
                _number(raw.get("billingpretaxtotal"), "BillingPreTaxTotal"), billing_currency
            ),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UpstreamRejected(f"usage line: {where}: {first['msg']}") from exc


def _number(value: Any, name: str) -> Decimal:
    if value is None or isinstance(value, bool):
        raise UpstreamRejected(f"usage line: {name} is missing")
    try:
        number = Decimal(value) if isinstance(value, Decimal | int) else Decimal(str(value))
    except InvalidOperation as exc:
        raise UpstreamRejected(f"usage line: {name} is not a number: {value!r}") from exc
    if not number.is_finite():
        raise UpstreamRejected(f"usage line: {name} is not a number: {value!r}")
    return number


def _moment(value: Any, name: str) -> datetime:
    if not isinstance(value, str) or not value.strip():
        raise UpstreamRejected(f"usage line: {name} is missing")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise UpstreamRejected(f"usage line: {name} is not a date: {value!r}") from exc
    # Microsoft writes "…Z" or a bare timestamp meant as UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _day(value: Any, name: str) -> date:
    return _moment(value, name).date()


# ----------------------------------------------------------------- blobs


def _anonymous(request: httpx.Request) -> None:
    for name in _NOT_FOR_STORAGE:
        request.headers.pop(name, None)


def storage_http(http: httpx.Client) -> httpx.Client:
    """`http` with a hook that strips credentials: use it only for SAS-signed blob reads."""
    http.event_hooks["request"] = [*http.event_hooks["request"], _anonymous]
    return http


class NoCredentials:
    """The token provider of the blob transport: the SAS token in the URL is the credential."""

    def access_token(self, scope: str, *, user: bool = False) -> str:
        """Nothing (the storage client's hook removes the header anyway)."""
        return ""

    def forget(self, scope: str, *, user: bool = False) -> None:
        """Nothing to forget."""


def _spool_lines(response: httpx.Response) -> IO[bytes]:
    """Decompress a gzip blob into a spool (memory, then disk) while it downloads."""
    if response.status_code in (403, 404):
        response.read()
        # Azure Storage names the reason in a header (and an XML body).
        reason = response.headers.get("x-ms-error-code") or error_details(response)[1][:200]
        if response.status_code == 404:
            raise NotFound(f"usage blob: the blob does not exist any more ({reason})")
        raise UsageExportExpired(
            f"usage blob: access refused ({reason}): the export's SAS token expired or is "
            "invalid; start a new export"
        )
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115
    try:
        inflate = zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)  # gzip or zlib header
        for chunk in response.iter_bytes():
            spool.write(inflate.decompress(chunk))
        spool.write(inflate.flush())
        if not inflate.eof:
            # A cut-off download: a transport error, so the transport retries the whole blob.
            raise httpx.RemoteProtocolError("usage blob: the download ended inside the gzip data")
        spool.seek(0)
    except zlib.error as exc:
        spool.close()
        raise UpstreamRejected(f"usage blob: not a gzip file ({exc})") from exc
    except BaseException:
        spool.close()
        raise
    return spool


def _lines_then_close(spool: IO[bytes], blob: str) -> Iterator[UsageLine]:
    with spool:
        for number, raw in enumerate(spool, start=1):
            text = raw.strip()
            if not text:
                continue
            try:
                record = json.loads(text, parse_float=Decimal)
            except ValueError as exc:
                raise UpstreamRejected(f"usage blob {blob} line {number}: not JSON") from exc
            if not isinstance(record, dict):
                raise UpstreamRejected(f"usage blob {blob} line {number}: not an object")
            try:
                yield usage_line(record)
            except UpstreamRejected as exc:
                raise UpstreamRejected(f"usage blob {blob} line {number}: {exc.detail}") from exc


# ----------------------------------------------------------------- the client


class AzureUsageClient:
    """Starts exports, polls them and reads their blobs (the `AzureUsageExports` port)."""

    def __init__(
        self,
        graph: PartnerCenterTransport,
        blobs: PartnerCenterTransport,
        *,
        graph_base_url: str = GRAPH_BASE_URL,
        scope: str = GRAPH_SCOPE,
    ) -> None:
        self._graph = graph
        self._blobs = blobs
        self._base = graph_base_url.rstrip("/")
        self._scope = scope

    def close(self) -> None:
        """Close the blob host's pooled connections (Graph's belong to the Partner Center
        transport)."""
        self._blobs.http.close()

    def start_usage_export(
        self, request: UnbilledUsageExport | BilledUsageExport
    ) -> UsageExportOperation:
        """POST the export; the operation to poll (its Location)."""
        attribute_set = "full" if request.full_attributes else "basic"
        if isinstance(request, UnbilledUsageExport):
            path = "usage/unbilled/export"
            body: dict[str, str] = {
                "currencyCode": request.currency,
                "billingPeriod": request.period.value,
                "attributeSet": attribute_set,
            }
        else:
            path = "usage/billed/export"
            body = {"invoiceId": request.invoice_id, "attributeSet": attribute_set}
        response = self._graph.call(
            "POST", f"{self._base}/{REPORTS}/{path}", scope=self._scope, body=body
        )
        location = response.headers.get("Location")
        if response.status_code != 202 or not location:
            raise UpstreamRejected(
                f"usage export: expected 202 with a Location, got HTTP {response.status_code}",
                status=response.status_code,
            )
        location = self._own(location)
        return UsageExportOperation(id=location.rstrip("/").rsplit("/", 1)[-1], location=location)

    def usage_export_status(self, operation: UsageExportOperation) -> UsageExportStatus:
        """Read the operation once: running, succeeded (with its manifest) or failed."""
        response = self._graph.call("GET", self._own(operation.location), scope=self._scope)
        payload = _json_object(response, "usage export operation")
        status = str(payload.get("status") or "").lower()
        if status in _SUCCEEDED:
            manifest = payload.get("resourceLocation")
            if not isinstance(manifest, dict):
                link = payload.get("resourceLocation@odata.navigationLink")
                if not isinstance(link, str) or not link:
                    raise UpstreamRejected("usage export succeeded without a manifest")
                manifest = _json_object(
                    self._graph.call("GET", self._own(link), scope=self._scope), "usage manifest"
                )
            try:
                wire = WireManifest.model_validate(manifest)
                return UsageExportSucceeded(manifest=manifest_from_wire(wire))
            except ValidationError as exc:
                raise UpstreamRejected(f"usage manifest: {exc.errors()[0]['msg']}") from exc
        if status == "failed":
            error = payload.get("error")
            error = error if isinstance(error, dict) else {}
            code = error.get("code")
            return UsageExportFailed(
                code=str(code) if code is not None else None,
                reason=str(error.get("message") or "the export failed"),
            )
        # running, notStarted, or a status Microsoft adds later: poll again.
        return UsageExportRunning(retry_after_seconds=retry_after_seconds(response))

    def usage_lines(self, manifest: UsageManifest, blob: UsageBlobRef) -> Iterator[UsageLine]:
        """The lines of one blob, decompressed while downloading and parsed one at a time."""
        if blob not in manifest.blobs:
            raise NotFound(f"usage blob {blob.name} is not in manifest {manifest.id}")
        root = manifest.root_directory.rstrip("/")
        if not root.lower().startswith("https://"):
            raise UpstreamRejected("usage manifest: the root directory is not an https URL")
        url = f"{root}/{quote(blob.name, safe='/')}"
        if manifest.sas_token:
            url += "?" + manifest.sas_token.lstrip("?")
        spool = self._blobs.execute(
            "GET",
            url,
            scope="",
            headers={"Accept": "application/octet-stream, */*"},
            accept=(403, 404),
            consume=_spool_lines,
        )
        return _lines_then_close(spool, blob.name)

    def _own(self, url: str) -> str:
        # The operation and manifest URLs come back from Graph and are stored on records; only
        # Graph itself ever gets the Graph token.
        if not url.lower().startswith(self._base.lower() + "/"):
            raise UpstreamRejected(f"usage export: {url} is not under {self._base}")
        return url


def _json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        payload = json.loads(response.content.decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UpstreamRejected(f"{what}: not JSON") from exc
    if not isinstance(payload, dict):
        raise UpstreamRejected(f"{what}: not a JSON object")
    return payload

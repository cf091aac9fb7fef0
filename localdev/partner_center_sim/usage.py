"""Azure usage exports as Microsoft Graph serves them to a CSP partner.

`POST /v1.0/reports/partners/billing/usage/unbilled/export {currencyCode, billingPeriod,
attributeSet}` (or `…/usage/billed/export {invoiceId, attributeSet}`) → 202 + Location
`…/reports/partners/billing/operations/{id}`; reading the operation gives `running`, then
`succeeded` with `resourceLocation` (the manifest: root directory, SAS token, blobs), or `failed`
with an error. Each blob is a gzip file of JSON lines, one daily rated usage line each, with the
attribute names of Microsoft's attribute-set table (PascalCase).

Usage is generated, deterministically: every Azure plan subscription (product DZH318Z0BPS6) gets
a few resources (meter × resource group × region) chosen by its id, and each resource a quantity
per day that depends only on (subscription, resource, day). Billing periods are calendar months of
the simulated clock: `current` is this month up to today, `last` the previous month.
`period_totals` sums the same generator without going through an export, for tests.
"""

from __future__ import annotations

import calendar
import gzip
import hashlib
import hmac
import io
import json
import re
import secrets
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from .models import Subscription
from .state import AZURE_PLAN_PRODUCT_ID, SimState

# (category, subcategory, name, unit, consumed service, unit price in the billing currency)
METERS: tuple[tuple[str, str, str, str, str, Decimal], ...] = (
    ("Virtual Machines", "Dsv3 Series", "D2s v3", "1 Hour", "Microsoft.Compute", Decimal("0.096")),
    ("Virtual Machines", "BS Series", "B2ms", "1 Hour", "Microsoft.Compute", Decimal("0.0832")),
    ("Storage", "Standard SSD Managed Disks", "E10 LRS Disk", "1/Month", "Microsoft.Compute",
     Decimal("0.3072")),
    ("Storage", "Tables", "LRS Data Stored", "1 GB/Month", "Microsoft.Storage", Decimal("0.045")),
    ("Bandwidth", "Rtn Preference: MGN", "Standard Data Transfer Out", "1 GB", "Microsoft.Network",
     Decimal("0.087")),
    ("SQL Database", "General Purpose - Compute Gen5", "vCore", "1 Hour", "Microsoft.Sql",
     Decimal("0.2529")),
    ("Azure App Service", "Basic Plan", "B1", "1 Hour", "Microsoft.Web", Decimal("0.018")),
    ("Azure Monitor", "Log Analytics", "Pay-as-you-go Data Ingestion", "1 GB",
     "Microsoft.OperationalInsights", Decimal("2.76")),
)  # fmt: skip
RESOURCE_GROUPS = ("rg-web", "rg-data", "rg-shared", "rg-dev", "rg-backup")
REGIONS = ("westeurope", "northeurope", "germanywestcentral")
PARTNER_EARNED_CREDIT = Decimal("0.15")
_SIX_PLACES = Decimal("0.000001")
# Attributes the `basic` attribute set leaves out (Microsoft's attributeSet table).
FULL_ONLY = frozenset(
    {
        "AvailabilityId", "BenefitId", "ConsumedService", "CustomerCountry",
        "CustomerDomainName", "EntitlementDescription", "MeterCategory", "MeterId", "MeterName",
        "MeterRegion", "MeterSubCategory", "MeterType", "MpnId",
        "PartnerEarnedCreditPercentage", "ProductName", "PublisherId", "ResourceGroup",
        "ResourceLocation", "ServiceInfo1", "ServiceInfo2", "SubscriptionDescription", "Tags",
        "Tier2MpnId", "Unit",
    }
)  # fmt: skip
NO_DATA_CODE = "5000"
_INVOICE = re.compile(r"^SIM-(?P<year>\d{4})(?P<month>0[1-9]|1[0-2])$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Period:
    """A calendar month: its first day and the day after its last."""

    first: date
    end: date

    @property
    def month(self) -> str:
        """YYYYMM, as Microsoft's blob paths name it."""
        return f"{self.first.year:04d}{self.first.month:02d}"

    @property
    def last(self) -> date:
        """The month's last day."""
        return self.end - timedelta(days=1)


def month_of(day: date) -> Period:
    """The calendar month holding `day`."""
    first = day.replace(day=1)
    days = calendar.monthrange(first.year, first.month)[1]
    return Period(first, first + timedelta(days=days))


def billing_period(now: datetime, which: str) -> Period:
    """`current`: the month of `now`; `last`: the month before it."""
    this = month_of(now.date())
    return this if which == "current" else month_of(this.first - timedelta(days=1))


def invoice_period(invoice_id: str, now: datetime) -> Period | None:
    """The simulator's invoices are `SIM-YYYYMM`, one per finished month."""
    match = _INVOICE.match(invoice_id.strip())
    if match is None:
        return None
    period = month_of(date(int(match["year"]), int(match["month"]), 1))
    return period if period.end <= now.date() else None


@dataclass(frozen=True, slots=True)
class _Resource:
    meter: int
    group: str
    region: str
    name: str


def _digest(*parts: object) -> bytes:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()


def _resources(subscription_id: str) -> list[_Resource]:
    """Three to five resources per subscription, fixed by its id."""
    seed = _digest("resources", subscription_id.lower())
    count = 3 + seed[0] % 3
    chosen: list[_Resource] = []
    for index in range(count):
        meter = seed[1 + index] % len(METERS)
        group = RESOURCE_GROUPS[seed[8 + index] % len(RESOURCE_GROUPS)]
        region = REGIONS[seed[16 + index] % len(REGIONS)]
        chosen.append(_Resource(meter, group, region, f"res{index}"))
    return chosen


def _quantity(subscription_id: str, resource: _Resource, day: date) -> Decimal:
    seed = _digest("quantity", subscription_id.lower(), resource.name, day.isoformat())
    return (Decimal(int.from_bytes(seed[:4], "big") % 2_400_000) / Decimal(100_000)) + Decimal(
        "0.01"
    )


def _usage_window(sub: Subscription) -> tuple[date, date | None] | None:
    """First day and the day after the last day a subscription consumes (None: never)."""
    if sub.product_id != AZURE_PLAN_PRODUCT_ID or sub.status == "pending":
        return None
    start = sub.effective_start.astimezone(UTC).date()
    if sub.status in ("active", "suspended"):
        return start, None
    if sub.lifecycle_since is None:
        return None
    return start, sub.lifecycle_since.astimezone(UTC).date()


def _line(
    state: SimState,
    sub: Subscription,
    resource: _Resource,
    day: date,
    period: Period,
    currency: str,
) -> dict[str, Any]:
    customer = state.customers.get(sub.customer_id)
    category, subcategory, meter_name, unit, service, unit_price = METERS[resource.meter]
    quantity = _quantity(sub.id, resource, day)
    effective = (unit_price * (1 - PARTNER_EARNED_CREDIT)).quantize(_SIX_PLACES)
    total = (quantity * effective).quantize(_SIX_PLACES)
    entitlement = str(uuid.uuid5(uuid.NAMESPACE_URL, f"azure-subscription:{sub.id}"))
    meter_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"meter:{category}:{meter_name}"))
    start = datetime.combine(period.first, datetime.min.time(), UTC)
    end = datetime.combine(period.last, datetime.min.time(), UTC)
    return {
        "PartnerId": state.config.partner_tenant_id,
        "PartnerName": "Simulated Distributor",
        "CustomerId": sub.customer_id,
        "CustomerName": customer.company_name if customer else "",
        "CustomerDomainName": customer.domain if customer else "",
        "CustomerCountry": (
            str(customer.billing.get("defaultAddress", {}).get("country", "")) if customer else ""
        ),
        "MpnId": state.config.partner_id,
        "Tier2MpnId": sub.partner_id or "",
        "InvoiceNumber": "",
        "ProductId": sub.product_id,
        "SkuId": sub.sku_id,
        "AvailabilityId": sub.availability_id,
        "SkuName": "Microsoft Azure Plan",
        "ProductName": "Microsoft Azure",
        "PublisherName": "Microsoft",
        "PublisherId": "",
        "SubscriptionDescription": sub.friendly_name,
        "SubscriptionId": sub.id,
        "ChargeStartDate": _iso(start),
        "ChargeEndDate": _iso(end),
        "UsageDate": _iso(datetime.combine(day, datetime.min.time(), UTC)),
        "MeterType": unit,
        "MeterCategory": category,
        "MeterId": meter_id,
        "MeterSubCategory": subcategory,
        "MeterName": meter_name,
        "MeterRegion": resource.region,
        "Unit": unit,
        "ResourceLocation": resource.region,
        "ConsumedService": service,
        "ResourceGroup": resource.group,
        "ResourceURI": (
            f"/subscriptions/{entitlement}/resourceGroups/{resource.group}/providers/{service}"
            f"/{resource.name}"
        ),
        "ChargeType": "new",
        "UnitPrice": unit_price,
        "Quantity": quantity,
        "UnitType": unit,
        "BillingPreTaxTotal": total,
        "BillingCurrency": currency,
        "PricingPreTaxTotal": total,
        "EffectiveUnitPrice": effective,
        "PricingCurrency": currency,
        "PCToBCExchangeRate": Decimal(1),
        "PCToBCExchangeRateDate": _iso(start),
        "EntitlementId": entitlement,
        "EntitlementDescription": "Azure subscription 1",
        "PartnerEarnedCreditPercentage": Decimal(15),
        "CreditPercentage": Decimal(0),
        "CreditType": "Credit Not Applied",
        "BenefitOrderId": "",
        "BenefitId": "",
        "BenefitType": "",
        "ServiceInfo1": "",
        "ServiceInfo2": "",
        "Tags": "",
        "AdditionalInfo": "",
    }


def period_lines(
    state: SimState, period: Period, through: date, currency: str
) -> Iterator[dict[str, Any]]:
    """Every usage line of the period up to and including `through` (call under the lock)."""
    last = min(period.last, through)
    for sub in sorted(state.subscriptions.values(), key=lambda s: s.id):
        window = _usage_window(sub)
        if window is None:
            continue
        first = max(period.first, window[0])
        stop = last if window[1] is None else min(last, window[1] - timedelta(days=1))
        resources = _resources(sub.id)
        day = first
        while day <= stop:
            for resource in resources:
                yield _line(state, sub, resource, day, period, currency)
            day += timedelta(days=1)


def period_totals(state: SimState, period: Period, through: date, currency: str) -> dict[str, Any]:
    """Sums of the period's usage straight from the generator (for tests to compare with)."""
    lines = 0
    quantity = Decimal(0)
    total = Decimal(0)
    by_subscription: dict[str, Decimal] = {}
    by_category: dict[str, Decimal] = {}
    for line in period_lines(state, period, through, currency):
        lines += 1
        quantity += line["Quantity"]
        total += line["BillingPreTaxTotal"]
        sub = line["SubscriptionId"]
        by_subscription[sub] = by_subscription.get(sub, Decimal(0)) + line["BillingPreTaxTotal"]
        category = line["MeterCategory"]
        by_category[category] = by_category.get(category, Decimal(0)) + line["BillingPreTaxTotal"]
    return {
        "billingMonth": f"{period.first.year:04d}-{period.first.month:02d}",
        "through": min(period.last, through).isoformat(),
        "currency": currency,
        "lines": lines,
        "quantity": str(quantity),
        "billingPreTaxTotal": str(total),
        "bySubscription": {k: str(v) for k, v in sorted(by_subscription.items())},
        "byMeterCategory": {k: str(v) for k, v in sorted(by_category.items())},
    }


def json_line(line: dict[str, Any], full: bool) -> bytes:
    """One JSON line; amounts as exact JSON numbers (Decimal text), like Microsoft's files."""
    parts = []
    for key, value in line.items():
        if not full and key in FULL_ONLY:
            continue
        text = format(value, "f") if isinstance(value, Decimal) else json.dumps(value)
        parts.append(f"{json.dumps(key)}:{text}")
    return ("{" + ",".join(parts) + "}\n").encode()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------- exports


@dataclass(slots=True)
class UsageExport:
    """One export operation and, once it succeeded, its blobs."""

    id: str
    created: datetime
    currency: str
    full: bool
    period: Period | None  # None: nothing to export (an unknown invoice)
    ready_at: datetime
    polls_left: int
    failure: str = ""
    status: str = "running"
    finished: datetime | None = None
    manifest_id: str = ""
    etag: str = ""
    sas_expires: datetime | None = None
    blobs: dict[str, bytes] = field(default_factory=dict)
    error: dict[str, str] | None = None


class UsageExports:
    """Export operations and their blobs (in memory: a restarted simulator forgets them)."""

    def __init__(self) -> None:
        self.exports: dict[str, UsageExport] = {}
        self._signing_key = secrets.token_bytes(32)

    def clear(self) -> None:
        """Forget every export."""
        self.exports.clear()

    def start(
        self, state: SimState, now: datetime, period: Period | None, currency: str, full: bool
    ) -> UsageExport:
        """A new running export operation (call under the state lock)."""
        config = state.config
        export = UsageExport(
            id=str(uuid.uuid4()),
            created=now,
            currency=currency.upper(),
            full=full,
            period=period,
            ready_at=now + timedelta(seconds=config.usage_export_seconds),
            polls_left=config.usage_export_polls,
            failure=config.usage_export_failure,
        )
        self.exports[export.id] = export
        return export

    def poll(self, state: SimState, export_id: str, now: datetime) -> UsageExport | None:
        """Read an operation; each read counts as a poll and may finish it."""
        export = self.exports.get(export_id.lower())
        if export is None or export.status != "running":
            return export
        export.polls_left -= 1
        if export.polls_left >= 0 or now < export.ready_at:
            return export
        export.finished = now
        if export.failure:
            export.status = "failed"
            export.error = {"code": "500", "message": export.failure}
        elif export.period is None or export.currency != state.config.billing_currency.upper():
            export.status = "failed"
            export.error = {"code": NO_DATA_CODE, "message": "No data available"}
        else:
            self._write_blobs(state, export, now)
            export.status = "succeeded"
        return export

    def _write_blobs(self, state: SimState, export: UsageExport, now: datetime) -> None:
        assert export.period is not None
        per_blob = max(1, state.config.usage_lines_per_blob)
        lines = period_lines(state, export.period, now.date(), export.currency)
        content = hashlib.sha256()
        parts: list[bytes] = []
        for chunk in _chunks(lines, per_blob):
            buffer = io.BytesIO()
            # mtime=0: the same lines always give the same bytes (and the same eTag).
            with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz:
                for line in chunk:
                    gz.write(json_line(line, export.full))
            parts.append(buffer.getvalue())
            content.update(parts[-1])
        export.etag = content.hexdigest()[:20]
        # Names follow the data: an export of unchanged data lists the same blobs again.
        for index, data in enumerate(parts):
            export.blobs[f"part-{index:05d}-{export.etag}.c000.json.gz"] = data
        export.manifest_id = str(uuid.uuid4())
        export.sas_expires = now + timedelta(minutes=state.config.usage_sas_minutes)

    def by_manifest(self, manifest_id: str) -> UsageExport | None:
        """The succeeded export a manifest id belongs to."""
        wanted = manifest_id.lower()
        return next((e for e in self.exports.values() if e.manifest_id == wanted), None)

    def sas_token(self, export: UsageExport) -> str:
        """A directory SAS (read, list) for the export's blobs, valid until `sas_expires`."""
        assert export.sas_expires is not None
        expiry = _iso(export.sas_expires)
        return (
            f"sv=2021-08-06&sr=d&sp=rl&sdd=7&se={expiry.replace(':', '%3A')}"
            f"&sig={self._signature(export.id, expiry)}"
        )

    def check_sas(
        self, export: UsageExport, expiry: str | None, signature: str | None, now: datetime
    ) -> str | None:
        """None when the SAS grants the read now, else why not (Azure answers 403)."""
        if not expiry or not signature:
            return "Server failed to authenticate the request. No SAS token was given."
        if not hmac.compare_digest(signature, self._signature(export.id, expiry)):
            return "Signature did not match."
        try:
            until = datetime.strptime(expiry, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return "Signed expiry time is not valid."
        if now >= until:
            return "Signed expiry time [" + expiry + "] must be after the current time."
        return None

    def _signature(self, export_id: str, expiry: str) -> str:
        digest = hmac.new(self._signing_key, f"{export_id}\n{expiry}".encode(), "sha256")
        return digest.hexdigest()


def _chunks(lines: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk

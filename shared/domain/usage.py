"""Azure consumption as Partner Center exports it: daily rated usage lines, and the export.

Partner Center's asynchronous usage export (Microsoft Graph `…/reports/partners/billing/usage/
{unbilled|billed}/export`) answers with an operation to poll; a finished one points at a
*manifest* of blobs, each a gzip file of JSON lines, one rated usage line per meter, resource and
day. These are the domain's records of that; the wire shapes stay in the Partner Center adapter.

Idempotent import: a manifest's `etag` changes whenever Microsoft's data for the period changes,
and a blob's `name` is unique within its manifest, so `UsageManifest.import_key(blob)` (billing
month, etag, blob name) says whether that blob of that data version was already imported. An
unbilled period keeps growing until it is billed: a new etag for a month *replaces* what an
older etag of the same month brought (write its rows under the etag and switch the month over
once every blob of the new etag is in); never add the two.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from shared.domain.errors import UpstreamRejected
from shared.domain.money import CURRENCY_PATTERN, Money

AZURE_PLAN_PRODUCT_ID = "DZH318Z0BPS6"
BILLING_MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"


def _utc(value: datetime) -> datetime:
    offset = value.utcoffset()
    if offset is None or offset.total_seconds() != 0:
        raise ValueError("must be an aware UTC datetime")
    return value


UtcDateTime = Annotated[datetime, AfterValidator(_utc)]


class BillingPeriod(StrEnum):
    """Which unbilled period an export covers: this calendar month or the previous one."""

    CURRENT = "current"
    LAST = "last"


class UnbilledUsageExport(BaseModel):
    """Ask for the unbilled daily rated usage of a billing period, in one billing currency."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["unbilled"] = "unbilled"
    period: BillingPeriod
    currency: str = Field(pattern=CURRENCY_PATTERN)
    # `basic` leaves out the meter, resource group and location: the report needs `full`.
    full_attributes: bool = True


class BilledUsageExport(BaseModel):
    """Ask for the billed daily rated usage of one invoice."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["billed"] = "billed"
    invoice_id: str = Field(min_length=1, max_length=64)
    full_attributes: bool = True


UsageExportRequest = Annotated[UnbilledUsageExport | BilledUsageExport, Field(discriminator="kind")]


class UsageExportOperation(BaseModel):
    """A started export: where to poll it (store it on the import record, poll it later)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    location: str = Field(min_length=1, description="The operation's URL (the 202's Location).")


class UsageBlobRef(BaseModel):
    """One file of an export: its name within the manifest and its partition."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    partition_value: str = ""


class UsageManifest(BaseModel):
    """What a finished export produced: blobs under one root, readable with one SAS token."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    etag: str = Field(description="Changes whenever the data of the period changes.")
    created: UtcDateTime
    schema_version: str = ""
    data_format: str = "compressedJSONLines"
    partner_tenant_id: str = ""
    # YYYY-MM when the root directory names it (Microsoft's `BillingMonth=YYYYMM`), else None.
    billing_month: str | None = Field(None, pattern=BILLING_MONTH_PATTERN)
    root_directory: str
    sas_token: str = Field(repr=False)
    blob_count: int = Field(ge=0)
    blobs: tuple[UsageBlobRef, ...]

    @model_validator(mode="after")
    def _count_matches(self) -> UsageManifest:
        if self.blob_count != len(self.blobs):
            raise ValueError(f"blobCount {self.blob_count} but {len(self.blobs)} blobs listed")
        return self

    def import_key(self, blob: UsageBlobRef) -> str:
        """A key that is the same exactly when the same data of the same blob comes again."""
        return f"{self.billing_month or '-'}:{self.etag}:{blob.name}"


class UsageExportRunning(BaseModel):
    """The export is still being prepared: poll again later."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: Literal["running"] = "running"
    retry_after_seconds: float | None = None


class UsageExportSucceeded(BaseModel):
    """The export is ready: read its blobs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: Literal["succeeded"] = "succeeded"
    manifest: UsageManifest


class UsageExportFailed(BaseModel):
    """Microsoft gave up on the export (e.g. "No data available"); start a new one later."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: Literal["failed"] = "failed"
    code: str | None = None
    reason: str


UsageExportStatus = UsageExportRunning | UsageExportSucceeded | UsageExportFailed


class UsageLine(BaseModel):
    """One daily rated usage line: a meter's consumption in one Azure subscription on one day,
    rated at the partner's price in the billing currency."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    customer_tenant_id: str = Field(min_length=1)
    customer_name: str = ""
    # The Azure plan's Partner Center subscription, and the Azure subscription under it.
    subscription_id: str = Field(min_length=1)
    entitlement_id: str = ""
    entitlement_description: str = ""
    # The indirect reseller's MPN id (Tier2MpnId): whose customer this usage belongs to.
    reseller_mpn_id: str = ""
    product_id: str = ""
    sku_id: str = ""
    charge_type: str = ""
    meter_id: str = ""
    meter_category: str = ""
    meter_subcategory: str = ""
    meter_name: str = ""
    meter_region: str = ""
    resource_group: str = ""
    resource_location: str = ""
    resource_uri: str = ""
    unit: str = ""
    usage_date: date
    charge_start: UtcDateTime
    charge_end: UtcDateTime
    quantity: Decimal = Field(allow_inf_nan=False)
    # Unit prices and the pricing total are in the pricing currency (Microsoft's price list);
    # the billing total is what the partner pays, in its billing currency, converted at
    # `exchange_rate` (pricing → billing).
    unit_price: Money
    effective_unit_price: Money
    pricing_pre_tax_total: Money
    exchange_rate: Decimal = Field(Decimal(1), gt=0, allow_inf_nan=False)
    billing_pre_tax_total: Money

    @model_validator(mode="after")
    def _pricing_in_one_currency(self) -> UsageLine:
        currencies = {
            self.unit_price.currency,
            self.effective_unit_price.currency,
            self.pricing_pre_tax_total.currency,
        }
        if len(currencies) != 1:
            raise ValueError(f"a usage line's prices mix currencies {sorted(currencies)}")
        return self

    @property
    def currency(self) -> str:
        """The billing currency (of `billing_pre_tax_total`)."""
        return self.billing_pre_tax_total.currency

    @property
    def billing_month(self) -> str:
        """YYYY-MM of the usage day."""
        return f"{self.usage_date.year:04d}-{self.usage_date.month:02d}"


class UsageExportExpired(UpstreamRejected):
    """The export's blobs can no longer be read (SAS token expired or refused, blob gone):
    start a new export for the period; its manifest's etag tells whether the data changed."""

    title = "Usage export expired"

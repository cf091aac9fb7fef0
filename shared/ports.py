"""Protocols the services need; adapters implement them, tests fake them (tests/fakes.py)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import IO, Any, Protocol, TypeVar

from pydantic import BaseModel

from shared.domain.claims import Claim
from shared.domain.identity import IndirectReseller, VerifiedToken
from shared.domain.ledger import (
    CustomerMonth,
    LedgerFact,
    MonthSlice,
    MonthTotals,
    MonthWrite,
    SubscriptionMonth,
    TotalShard,
)
from shared.domain.model import Page, Record
from shared.domain.notifications import Email
from shared.domain.outbox import OutboxMessage, Queue
from shared.domain.usage_report import UsageAggregate

M = TypeVar("M", bound=Record)


class Clock(Protocol):
    """Where the services get the time from (aware UTC)."""

    def now(self) -> datetime:
        """The current time, aware UTC."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """The current time, aware UTC."""
        return datetime.now(UTC)


class Repository(Protocol[M]):
    """Stores one record type; writes are atomic with the outbox messages given to them."""

    def get(self, partition: str, row: str) -> M:
        """The record, or NotFound."""
        ...

    def find(self, partition: str, row: str) -> M | None:
        """The record, or None."""
        ...

    def add(
        self, item: M, *, messages: Sequence[OutboxMessage] = (), claims: Collection[Claim] = ()
    ) -> M:
        """Insert a new record (Conflict if it exists), with its outbox messages and claims
        (ClaimTaken when another record of the partition holds one)."""
        ...

    def update(
        self,
        item: M,
        *,
        messages: Sequence[OutboxMessage] = (),
        claims: Collection[Claim] = (),
        releases: Collection[Claim] = (),
    ) -> M:
        """Replace the record if unchanged since read (ConcurrencyConflict otherwise), taking
        `claims` and giving up `releases` in the same transaction."""
        ...

    def claim_owner(self, partition: str, claim: Claim) -> str | None:
        """The id (RowKey) of the record holding `claim` in `partition`, or None."""
        ...

    def delete(self, item: M) -> None:
        """Delete the record if unchanged since read (ConcurrencyConflict otherwise)."""
        ...

    def claims(self, partition: str, kind: str) -> Iterator[tuple[Claim, str]]:
        """Every claim of `kind` in `partition` with the RowKey of its holder (one range query
        of the partition's claim rows of that kind: no record is read)."""
        ...

    def drop_claims(self, partition: str, claims: Collection[Claim]) -> int:
        """Delete claim rows nothing needs any more (ones already gone are skipped); how many
        were deleted."""
        ...

    def save_all(
        self,
        partition: str,
        *,
        adds: Sequence[M] = (),
        updates: Sequence[M] = (),
        messages: Sequence[OutboxMessage] = (),
        claims: Sequence[tuple[Claim, str]] = (),
        releases: Sequence[tuple[Claim, str]] = (),
    ) -> list[M]:
        """Insert and replace records of one partition atomically, with outbox messages and
        (claim, owner id) claims taken and released."""
        ...

    def list(
        self,
        partition: str | None = None,
        *,
        equals: Mapping[str, Any] | None = None,
        page_size: int = 50,
        continuation_token: str | None = None,
        before: Mapping[str, datetime] | None = None,
        since: Mapping[str, datetime] | None = None,
        rows: tuple[str, str] | None = None,
    ) -> Page[M]:
        """One page of records, optionally of one partition, with fields equal to values,
        (`before`) datetime fields earlier than the given moments and (`since`) datetime fields
        at or after them; a record without the field matches neither. `rows` (low, high): only
        row keys from low to high, both included."""
        ...

    def iterate(self, partition: str | None = None, **query: Any) -> Iterator[M]:
        """Every record (all pages) of a partition or the table, filtered as `list` is."""
        ...

    def column(self, partition: str, field: str, *, rows: tuple[str, str]) -> dict[str, Any]:
        """One scalar field of the partition's records with row keys from low to high (both
        included), by row key; a record without it is left out. Only that field is read, not
        whole records (the reports' customer names)."""
        ...


class StepScheduler(Protocol):
    """Puts a queue message that becomes visible later (a step waiting without sleeping)."""

    def send_later(self, queue: Queue, body: Mapping[str, Any], delay_seconds: float) -> None:
        """Send `body` to `queue`, invisible for `delay_seconds`."""
        ...


class CallCounter(Protocol):
    """What one unit of work spent on Partner Center so far (the request budget's meter)."""

    @property
    def calls(self) -> int:
        """Requests sent (each attempt)."""
        ...

    @property
    def throttled(self) -> int:
        """429 answers waited out."""
        ...

    @property
    def waited_seconds(self) -> float:
        """Seconds spent waiting for the budget or a Retry-After."""
        ...


# `with meter() as counter:` counts the Partner Center calls made inside it (this thread and
# the contexts copied from it).
# (`shared.domain.metering.metered` is one; its `CallMeter` is the counter, not this.)
MeterFactory = Callable[[], AbstractContextManager[CallCounter]]


class Mailer(Protocol):
    """Sends e-mail (a drop folder locally, SMTP in Azure)."""

    def send(self, email: Email, *, message_id: str) -> None:
        """Send `email`; `message_id` identifies it (the same id means the same e-mail)."""
        ...


class TokenVerifier(Protocol):
    """Checks a caller's credentials against the trusted issuers (JWKS-backed in Azure)."""

    def verify(self, token: str) -> VerifiedToken:
        """The checked token; Unauthenticated (with no reason given) if anything is wrong."""
        ...

    def from_easy_auth(self, header: str) -> VerifiedToken:
        """The caller App Service authentication vouches for (`X-MS-CLIENT-PRINCIPAL`)."""
        ...


# --- Partner Center -------------------------------------------------------------------------
# The PartnerCenter protocol lives in this section (the Partner Center client implements it).
# Imported here rather than at the top so this section stays self-contained for its owner.
from shared.domain.catalog import OfferedProduct, PriceLine, ProductSku  # noqa: E402
from shared.domain.customers import CreatedTenant, Qualification, Tenant, TenantRequest  # noqa: E402
from shared.domain.orders import (  # noqa: E402
    CartLineRequest,
    CartRef,
    CheckoutResult,
    OrderProvisioning,
    PlacedOrder,
)
from shared.domain.subscriptions import (  # noqa: E402
    ChangeAccepted,
    ChangeProgress,
    LicenceCount,
    SubscriptionChange,
    SubscriptionFacts,
    TransitionOption,
    TransitionOutcome,
    TransitionRequest,
)
from shared.domain.sync import AuditEvent  # noqa: E402
from shared.domain.usage import (  # noqa: E402
    BilledUsageExport,
    UnbilledUsageExport,
    UsageBlobRef,
    UsageExportOperation,
    UsageExportStatus,
    UsageLine,
    UsageManifest,
)


class IndirectResellers(Protocol):
    """The distributor's indirect resellers as Partner Center knows them."""

    def list_indirect_resellers(self) -> list[IndirectReseller]:
        """Every indirect reseller in a relationship with the distributor (app+user)."""
        ...


class AzureUsageExports(Protocol):
    """Partner Center's asynchronous Azure usage export (Microsoft Graph partner billing).

    Start an export, store the operation on a record, poll it later (never sleep in a step):
    running → succeeded with a manifest, or failed (e.g. "No data available": start anew later).
    Import each blob once: `manifest.import_key(blob)` (billing month, data etag, blob name) is
    the same exactly when the same data comes again; a new etag for a month replaces the older
    one's lines, it does not add to them. Errors as for `PartnerCenter`; reading a
    blob after the export's SAS token expired raises `UsageExportExpired` (start a new export).
    """

    def start_usage_export(
        self, request: UnbilledUsageExport | BilledUsageExport
    ) -> UsageExportOperation:
        """POST an unbilled (current/last month) or billed (invoice) export; the operation."""
        ...

    def usage_export_status(self, operation: UsageExportOperation) -> UsageExportStatus:
        """Read the operation once: running (with a suggested wait), succeeded, or failed."""
        ...

    def usage_lines(self, manifest: UsageManifest, blob: UsageBlobRef) -> Iterator[UsageLine]:
        """One blob's usage lines, streamed (never the whole blob in memory)."""
        ...


class PartnerCenter(IndirectResellers, AzureUsageExports, Protocol):
    """Microsoft Partner Center as the services see it (REST client or a fake).

    Errors: `NotFound`; `UpstreamRejected` with Partner Center's `code` (4xx answers, including
    409); `ConcurrencyConflict` on an ETag mismatch; `UpstreamUnavailable` (with `retry_after`)
    when retrying later may succeed, including a sign-in outage (401/403, refused credentials:
    the platform's configuration, which an operator fixes, not the record's fault).
    Writes take an optional `request_id` (`MS-RequestId`): pass the same one when repeating a
    write that may already have happened, and Partner Center does it only once.
    """

    def customer_tenants(self, *, indirect_reseller_id: str | None = None) -> Iterator[Tenant]:
        """Every customer tenant, lazily; with `indirect_reseller_id`, Partner Center's
        `starts_with` filter (another reseller whose id begins with this one's matches too)."""
        ...

    def customer_tenant(self, tenant_id: str) -> Tenant:
        """One customer tenant by id (NotFound if there is none)."""
        ...

    def create_customer_tenant(
        self, request: TenantRequest, *, request_id: str | None = None
    ) -> CreatedTenant:
        """Create a tenant for an indirect reseller's customer; the answer carries the first
        admin's sign-in once (a replay with the same `request_id` gives it again)."""
        ...

    def is_domain_available(self, domain: str) -> bool:
        """Whether `<domain>` (e.g. `contoso.onmicrosoft.com`) is still free."""
        ...

    def relationship_request_url(self) -> str:
        """The link a customer's admin opens to accept the partner as reseller."""
        ...

    def catalog_products(self, market: str, target_view: str) -> list[OfferedProduct]:
        """Products of a catalog view (e.g. `OnlineServices`) in a market."""
        ...

    def product_skus(self, product_id: str, market: str) -> list[ProductSku]:
        """A product's SKUs in a market, each with its purchasable availabilities (no prices)."""
        ...

    def price_lines(self, market: str) -> Iterator[PriceLine]:
        """The licence-based price sheet of a market, line by line."""
        ...

    # Ordering in the domain's words: the adapter builds the cart and maps the answers.
    def place_cart(
        self, customer_tenant: str, lines: Sequence[CartLineRequest], *, request_id: str
    ) -> CartRef:
        """Create a cart of `lines` (the same `request_id` gives back the same cart)."""
        ...

    def check_out(self, customer_tenant: str, cart_id: str, *, request_id: str) -> CheckoutResult:
        """Check a cart out; refused order groups come back in `errors`."""
        ...

    def placed_orders(self, customer_tenant: str) -> list[PlacedOrder]:
        """Every order of the customer's tenant."""
        ...

    def placed_order(self, customer_tenant: str, order_id: str) -> PlacedOrder:
        """One order of the customer's tenant, as it stands now (subscription ids included)."""
        ...

    def order_provisioning(self, customer_tenant: str, order_id: str) -> OrderProvisioning:
        """Whether Partner Center has provisioned every line of an order."""
        ...

    def subscription_facts(self, customer_tenant: str) -> list[SubscriptionFacts]:
        """Every subscription of the customer's tenant, in our words."""
        ...

    def subscription(self, customer_tenant: str, subscription_id: str) -> SubscriptionFacts:
        """One subscription as Partner Center holds it now (NotFound if it has none)."""
        ...

    def change_subscription(
        self,
        customer_tenant: str,
        subscription_id: str,
        change: SubscriptionChange,
        *,
        request_id: str,
    ) -> SubscriptionFacts | ChangeAccepted:
        """Apply `change`: read the current resource, change only what `change` names, write
        the whole resource back with its ETag and the stored MS-RequestId. A 202 comes back as
        `ChangeAccepted` (poll it with `change_progress`); a refusal raises UpstreamRejected with
        Partner Center's code (800090, 900213, 800091 …); 800082 / 900278 (renewal or another
        operation in progress) raise UpstreamUnavailable (wait, retry); a lost ETag race (412: the
        resource changed between the read and the write) raises ConcurrencyConflict.
        """
        ...

    def change_progress(
        self, customer_tenant: str, subscription_id: str, accepted: ChangeAccepted
    ) -> ChangeProgress:
        """Where a change Partner Center accepted for later is (one read, no waiting)."""
        ...

    def licence_counts(self, customer_tenant: str) -> list[LicenceCount]:
        """Licences bought and assigned per SKU on the tenant (`subscribedskus`)."""
        ...

    def transition_options(
        self, customer_tenant: str, subscription_id: str, *, scheduled: bool = False
    ) -> list[TransitionOption]:
        """Where the subscription may move now (or, `scheduled`, at renewal), and why not."""
        ...

    def transition(
        self,
        customer_tenant: str,
        subscription_id: str,
        request: TransitionRequest,
        *,
        request_id: str,
    ) -> TransitionOutcome:
        """Move the subscription (trial → paid, upgrade) with the stored MS-RequestId."""
        ...

    def transition_progress(
        self, customer_tenant: str, subscription_id: str, transition_id: str
    ) -> TransitionOutcome:
        """Where a transition Partner Center answered "started" is (one read, no waiting);
        NotFound when Partner Center knows no such transition of the subscription."""
        ...

    def audit_events(self, since: datetime, until: datetime) -> Iterator[AuditEvent]:
        """Partner Center's audit records of [since, until), oldest first, lazily (every page;
        read one day at a time, as Microsoft advises; at most the last 90 days exist)."""
        ...

    def customer_qualification(self, customer_tenant: str, segment: str) -> Qualification:
        """Microsoft's verification of the customer for `segment` (education, government,
        nonprofit): None when it never asked, else Pending, Approved or Rejected."""
        ...


# --- Catalog ----------------------------------------------------------------------------------
from shared.domain.catalog import (  # noqa: E402
    CatalogEntry,
    CatalogSettings,
    CatalogState,
    CatalogVersion,
)


class CatalogStore(Protocol):
    """A reseller's catalog rows; every write also rewrites its version, atomically."""

    def version(self, reseller: str) -> str | None:
        """The reseller's catalog version (one point read; None if it never changed)."""
        ...

    def load(self, reseller: str) -> CatalogState:
        """Settings, entries and version of a reseller (one partition query)."""
        ...

    def find_settings(self, reseller: str) -> CatalogSettings | None:
        """The reseller's categories and segments, if it ever set them."""
        ...

    def find_entry(self, reseller: str, product_id: str) -> CatalogEntry | None:
        """The reseller's entry for a product, if any."""
        ...

    def save_settings(self, settings: CatalogSettings, version: CatalogVersion) -> CatalogSettings:
        """Insert (no ETag) or replace (If-Match its ETag) the settings, with a new version."""
        ...

    def save_entry(self, entry: CatalogEntry, version: CatalogVersion) -> CatalogEntry:
        """Insert (no ETag) or replace (If-Match its ETag) an entry, with a new version."""
        ...


class CustomerDirectory(Protocol):
    """What the catalog needs to know about a customer (the customers module owns them)."""

    def segment_of(self, reseller: str, customer_id: str) -> str:
        """The segment id the customer buys in; NotFound if the reseller has no such customer."""
        ...


class RequestBudget(Protocol):
    """The Partner Center requests every instance shares (one partner tenant's rate limit)."""

    def acquire(self) -> float:
        """Wait for a request's token; the seconds waited (UpstreamUnavailable if too long)."""
        ...

    def throttled(self, retry_after: float) -> None:
        """Partner Center answered 429: every instance pauses for `retry_after` seconds."""
        ...


class LedgerReader(Protocol):
    """The ledger's month aggregates, as the reports read them (shared/domain/ledger.py).

    Pages are in key order: subscriptions by (customer id, subscription id), customers by id.
    A month nothing was projected into reads as empty pages and zero totals."""

    def subscription_months(
        self,
        reseller: str,
        month: str,
        *,
        customer_id: str | None = None,
        product_id: str | None = None,
        page_size: int = 100,
        continuation_token: str | None = None,
    ) -> Page[SubscriptionMonth]:
        """A page of the month's subscription rows, optionally of one customer and/or of one
        product (the closing state's product)."""
        ...

    def customer_months(
        self,
        reseller: str,
        month: str,
        *,
        page_size: int = 100,
        continuation_token: str | None = None,
    ) -> Page[CustomerMonth]:
        """A page of the month's customer rows."""
        ...

    def customer_month(self, reseller: str, month: str, customer_id: str) -> CustomerMonth | None:
        """One customer's row for the month, or None."""
        ...

    def totals(self, reseller: str, month: str) -> MonthTotals:
        """The reseller's figures for the month (zero when nothing was projected)."""
        ...

    def opened(self, reseller: str, month: str) -> bool:
        """Whether the month's opening finished (every live row of the month before carried)."""
        ...


class ReportWriter(Protocol):
    """Writes a report's rows into one file format (CSV, XLSX), incrementally."""

    def write(
        self,
        model: type[BaseModel],
        rows: Iterable[BaseModel],
        out: IO[bytes],
        *,
        decimal_comma: bool,
        title: str,
    ) -> None:
        """Write the columns of `model` and one line per row to `out`; `decimal_comma` when
        the reader's country writes 12,50; `title` names the sheet where the format has one."""
        ...


class LedgerStore(LedgerReader, Protocol):
    """The ledger's month partitions as the projector, the month opening and the rebuild write
    and read them (one partition per reseller and month; see shared/domain/ledger.py)."""

    def present_facts(self, reseller: str, month: str, keys: Collection[str]) -> set[str]:
        """Which of the fact keys are already in the month."""
        ...

    def month_slice(self, reseller: str, month: str, customer_id: str) -> MonthSlice:
        """The customer's subscription rows, customer row and totals shard of the month (each
        with its ETag) and whether the month's opening began and finished."""
        ...

    def write(self, write: MonthWrite) -> None:
        """Commit one customer's month change in one partition transaction; ConcurrencyConflict
        when any row changed (or appeared) since the slice was read, and nothing is written."""
        ...

    def mark_opened(self, reseller: str, month: str) -> None:
        """Record that the month's opening finished (idempotent)."""
        ...

    def mark_opening(self, reseller: str, month: str) -> None:
        """Record that the month's opening began: from then on a carry into the month inserts
        the live rows it misses (idempotent)."""
        ...

    def facts(self, reseller: str, month: str) -> Iterator[LedgerFact]:
        """Every fact of the month, in key order."""
        ...

    def shards(self, reseller: str, month: str) -> list[TotalShard]:
        """The month's totals shards that exist."""
        ...


class UsageRows(Protocol):
    """The usage report's aggregated rows, one partition per reseller, month and import."""

    def upsert(self, partition: str, rows: Sequence[tuple[str, UsageAggregate]]) -> None:
        """Insert or replace each (row key, row): writing the same rows again changes nothing."""
        ...

    def read(self, partition: str, customer_id: str | None = None) -> Iterator[UsageAggregate]:
        """Every row of the partition (of one customer only, when given)."""
        ...

    def drop(self, partition: str) -> int:
        """Delete every row of the partition; how many."""
        ...

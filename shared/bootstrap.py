"""Wiring: builds adapters and repositories once per process, lazily (never at import).

Cold start: indexing the app (`function_app`) imports every blueprint, and every blueprint
imports this module, so nothing here may import an adapter or an SDK at module level. Each
factory imports its adapter inside itself, where it is first built; the module's top imports
only the domain, the ports and the services, which the routes need anyway for their models.
`tests/unit/test_cold_start.py` fails when an SDK is imported while the app is indexed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, TypeVar

from shared.domain.catalog import MARKET_STAMPS, MarketStamp, Product
from shared.domain.customers import Customer
from shared.domain.exports import ExportFormat
from shared.domain.idempotency import IdempotencyRecord
from shared.domain.identity import (
    DISTRIBUTOR,
    RESELLER_PARTITION,
    Identity,
    Invitation,
    Reseller,
    User,
)
from shared.domain.ledger import LedgerMessage
from shared.domain.model import Record
from shared.domain.notifications import Notification
from shared.domain.orders import Order, order_row_key
from shared.domain.quotes import Quote, quote_row_key
from shared.domain.ratelimit import RateWindow
from shared.domain.subscriptions import Subscription
from shared.domain.sync import SyncChunk, SyncRun, chunk_row_key, sync_row_key
from shared.domain.usage_report import IMPORTS_PARTITION, UsageImport
from shared.ports import (
    CatalogStore,
    Clock,
    CustomerDirectory,
    LedgerReader,
    LedgerStore,
    Mailer,
    MeterFactory,
    PartnerCenter,
    ReportWriter,
    SystemClock,
    TokenVerifier,
    UsageRows,
)
from shared.services import claims, ledger, migrations
from shared.services.catalog import CatalogReader
from shared.services.customers import CustomerBook, ProvisioningCustomers
from shared.services.housekeeping import Housekeeping
from shared.services.identity import Directory
from shared.services.ledger import LedgeredSubscriptions
from shared.services.migrations import Migration, MigrationRecord
from shared.services.orders import InFlightOrders, OrderBook, OrderPolicy
from shared.services.quotes import QuoteBook
from shared.services.reports.book import ReportsBook
from shared.services.subscriptions.requests import PendingChanges
from shared.services.sync import StaleRuns, SyncBook, SyncPolicy
from shared.services.usage_import import UsageBook, UsagePolicy
from shared.services.watchdog import TransientRecords

if TYPE_CHECKING:
    from shared.adapters.queues import OutboxDispatcher, QueueSender
    from shared.adapters.tables.repository import TableRepository
    from shared.adapters.tables.store import TableStore
    from shared.config import Settings

M = TypeVar("M", bound=Record)
R = TypeVar("R")

_REPOSITORIES: list[str] = []


def repository(build: Callable[[Container], R]) -> cached_property[R]:
    """Declare a repository of the container (those with an outbox are swept)."""
    _REPOSITORIES.append(build.__name__)
    return cached_property(build)


class Container:
    """Everything the triggers need, built on first use and shared by the process."""

    def __init__(self, settings: Settings | None = None, clock: Clock | None = None) -> None:
        self._settings = settings
        if clock is not None:
            self.__dict__["clock"] = clock

    @cached_property
    def clock(self) -> Clock:
        """The time the services decide by: the system's, or locally the simulator's."""
        s = self.settings
        if not s.partner_center_simulated_clock:
            return SystemClock()
        from shared.adapters.partner_center.simulated_clock import SimulatedPartnerCenterClock

        return SimulatedPartnerCenterClock(
            s.partner_center_api_base_url, ca_cert_path=s.partner_center_ca_cert_path
        )

    @cached_property
    def settings(self) -> Settings:
        """The app settings."""
        from shared.config import get_settings

        return self._settings or get_settings()

    @cached_property
    def store(self) -> TableStore:
        """The Table Storage account."""
        from shared.adapters.tables.store import TableStore

        return TableStore.from_settings(self.settings)

    @cached_property
    def queues(self) -> QueueSender:
        """The queue sender."""
        from shared.adapters.queues import QueueSender

        return QueueSender.from_settings(self.settings)

    @cached_property
    def outbox(self) -> OutboxDispatcher:
        """Sends outbox rows after each commit and sweeps the abandoned ones."""
        from shared.adapters.queues import OutboxDispatcher

        return OutboxDispatcher(self.queues)

    @cached_property
    def mailer(self) -> Mailer:
        """The e-mail sender."""
        from shared.adapters.mail import build_mailer

        return build_mailer(self.settings)

    def table_repository(
        self,
        table: str,
        model: type[M],
        keys: Callable[[M], tuple[str, str]],
        *,
        outbox: bool = False,
    ) -> TableRepository[M]:
        """A Table Storage repository; with `outbox`, its writes may carry queue messages."""
        from shared.adapters.tables.repository import TableRepository

        return TableRepository(self.store, table, model, keys, self.outbox if outbox else None)

    @repository
    def notifications(self) -> TableRepository[Notification]:
        """Notifications, by scope and id."""
        return self.table_repository(
            "Notifications", Notification, lambda n: (n.scope, n.id), outbox=True
        )

    @repository
    def resellers(self) -> TableRepository[Reseller]:
        """Resellers, by slug."""
        return self.table_repository("Resellers", Reseller, lambda r: ("reseller", r.slug))

    @repository
    def users(self) -> TableRepository[User]:
        """Users, by reseller slug (`*` for the distributor) and id."""
        return self.table_repository("Users", User, lambda u: (u.reseller, u.id))

    @repository
    def identities(self) -> TableRepository[Identity]:
        """Sign-in identities: (issuer hash, subject) → user."""
        return self.table_repository(
            "Identities", Identity, lambda i: (i.issuer_key, i.subject_key)
        )

    @repository
    def invitations(self) -> TableRepository[Invitation]:
        """Invitations, by reseller slug and token hash."""
        return self.table_repository(
            "Invitations", Invitation, lambda i: (i.reseller, i.token_hash)
        )

    @repository
    def idempotency(self) -> TableRepository[IdempotencyRecord]:
        """Idempotency keys, by scope and key hash."""
        return self.table_repository(
            "Idempotency", IdempotencyRecord, lambda i: (i.scope, i.key_hash)
        )

    @cached_property
    def directory(self) -> Directory:
        """The records of sign-in, users and resellers, for the services."""
        return Directory(
            resellers=self.resellers,
            users=self.users,
            identities=self.identities,
            invitations=self.invitations,
            notifications=self.notifications,
            clock=self.clock,
            customers=self.customers,
        )

    @cached_property
    def report_writers(self) -> dict[ExportFormat, ReportWriter]:
        """The file formats a report can be downloaded in (CSV, XLSX)."""
        from shared.adapters.exports import WRITERS

        return dict(WRITERS)

    @cached_property
    def token_verifier(self) -> TokenVerifier:
        """Checks bearer tokens against AUTH_ISSUERS (JWKS fetched lazily, cached)."""
        from shared.adapters.auth import JwtVerifier

        s = self.settings
        return JwtVerifier(
            s.auth_issuers,
            leeway_seconds=s.auth_clock_skew_seconds,
            jwks_ttl_seconds=s.auth_jwks_cache_seconds,
        )

    @cached_property
    def partner_center(self) -> PartnerCenter:
        """The Partner Center client (msal, pooled connections), built on first use."""
        from shared.adapters.partner_center import build_partner_center

        s = self.settings
        if s.partner_center_requests_per_minute <= 0:
            return build_partner_center(s)
        from shared.adapters.tables.budget import SharedRequestBudget

        # One budget per process, shared by its threads; the row is shared by every instance.
        budget = SharedRequestBudget.in_table(
            self.store, s.partner_center_tenant_id, s.partner_center_requests_per_minute
        )
        return build_partner_center(s, budget=budget)

    @repository
    def products(self) -> TableRepository[Product]:
        """Microsoft's catalog, by market and product id."""
        return self.table_repository("Products", Product, lambda p: (p.market, p.id))

    @repository
    def market_stamps(self) -> TableRepository[MarketStamp]:
        """The last catalog import of each market (what public catalog caches compare)."""
        return self.table_repository(
            "CatalogVersions", MarketStamp, lambda s: (MARKET_STAMPS, s.market)
        )

    @cached_property
    def catalog_store(self) -> CatalogStore:
        """Resellers' catalogs: settings, entries and version, one partition each."""
        from shared.adapters.tables.catalog import CatalogTable

        return CatalogTable(self.store)

    @cached_property
    def catalog_reader(self) -> CatalogReader:
        """The per-process cache of resellers' catalogs."""
        return CatalogReader(
            self.catalog_store,
            self.products,
            self.market_stamps,
            self.resellers,
            self.clock,
            self.settings.distributor_markup_percent,
        )

    @cached_property
    def customer_directory(self) -> CustomerDirectory:
        """Customers' segments (read from the Customers table)."""
        from shared.adapters.tables.customer_segments import TableCustomerSegments

        return TableCustomerSegments(self.store)

    @repository
    def customers(self) -> TableRepository[Customer]:
        """Customers, by reseller slug and customer id (ULID)."""
        return self.table_repository(
            "Customers", Customer, lambda c: (c.reseller, c.id), outbox=True
        )

    @cached_property
    def customer_book(self) -> CustomerBook:
        """The records the customer services work on."""
        return CustomerBook(
            self.customers,
            self.resellers,
            self.clock,
            self.catalog_store,
            self.notifications,
            stuck_after=timedelta(minutes=self.settings.watchdog_deadline_minutes),
            users=self.users,
        )

    @repository
    def orders(self) -> TableRepository[Order]:
        """Orders, by reseller slug and inverted order id (newest first; see the domain)."""
        return self.table_repository(
            "Orders", Order, lambda o: (o.reseller, order_row_key(o.id)), outbox=True
        )

    @repository
    def subscriptions(self) -> LedgeredSubscriptions:
        """Subscriptions, by customer id and Partner Center's subscription id; every write
        whose priced state changed carries the ledger's facts (an outbox row, same transaction)."""
        return LedgeredSubscriptions(
            self.table_repository(
                "Subscriptions", Subscription, lambda s: (s.customer_id, s.id.lower()), outbox=True
            ),
            self.clock,
        )

    @cached_property
    def ledger(self) -> LedgerStore:
        """The ledger's month partitions (facts and aggregates)."""
        from shared.adapters.tables.ledger import LedgerTable

        return LedgerTable(self.store)

    def project_ledger(self, message: LedgerMessage) -> int:
        """Project one `ledger` message (queue_ledger): facts in a currency other than the
        reseller's are refused."""
        reseller = self.resellers.find(RESELLER_PARTITION, message.reseller)
        currency = None if reseller is None else reseller.currency
        return ledger.project(self.ledger, self.clock, message, currency)

    def open_ledger_months(self) -> dict[str, int]:
        """Open the current month (and any not yet opened before it) for every reseller."""
        slugs = [r.slug for r in self.resellers.iterate(RESELLER_PARTITION)]
        return ledger.open_months(self.ledger, self.clock, slugs)

    def reconcile_ledger(self) -> dict[str, int]:
        """Re-send the facts of subscriptions the ledger's current month disagrees with (a
        lost message), for every reseller."""
        slugs = [r.slug for r in self.resellers.iterate(RESELLER_PARTITION)]
        return ledger.reconcile(self.ledger, self.clock, self.customers, self.subscriptions, slugs)

    @cached_property
    def order_book(self) -> OrderBook:
        """The records the order services work on."""
        s = self.settings
        return OrderBook(
            orders=self.orders,
            subscriptions=self.subscriptions,
            customers=self.customers,
            resellers=self.resellers,
            catalog=self.catalog_reader,
            clock=self.clock,
            scheduler=self.queues,
            notifications=self.notifications,
            users=self.users,
            policy=OrderPolicy(
                poll_seconds=s.order_poll_seconds,
                customer_wait_seconds=s.order_customer_wait_seconds,
                max_polls=s.order_max_polls,
                stuck_after=timedelta(minutes=s.watchdog_deadline_minutes),
            ),
            after_step=_crash_after(s.order_step_crash_after),
        )

    @repository
    def quotes(self) -> TableRepository[Quote]:
        """Quotes, by reseller slug and inverted quote id (newest first, as orders)."""
        return self.table_repository("Quotes", Quote, lambda q: (q.reseller, quote_row_key(q.id)))

    @repository
    def rate_limits(self) -> TableRepository[RateWindow]:
        """Fixed-window request counters, by bucket and window start."""
        return self.table_repository("RateLimits", RateWindow, lambda w: (w.bucket, w.window))

    @cached_property
    def quote_book(self) -> QuoteBook:
        """The records the quote services work on."""
        return QuoteBook(
            quotes=self.quotes,
            orders=self.order_book,
            rate_limits=self.rate_limits,
            public_base_url=self.settings.public_base_url,
        )

    @repository
    def sync_runs(self) -> TableRepository[SyncRun]:
        """Sync runs, by reseller slug and inverted run id (newest first)."""
        return self.table_repository(
            "SyncRuns", SyncRun, lambda r: (r.reseller, sync_row_key(r.id)), outbox=True
        )

    @repository
    def sync_chunks(self) -> TableRepository[SyncChunk]:
        """The chunks of sync runs, by run id and chunk number."""
        return self.table_repository(
            "SyncChunks", SyncChunk, lambda c: (c.run_id, chunk_row_key(c.number))
        )

    @cached_property
    def sync_meter(self) -> MeterFactory:
        """Counts a unit of work's Partner Center calls (the request budget's meter)."""
        from shared.domain.metering import metered

        return metered

    @cached_property
    def sync_book(self) -> SyncBook:
        """The records the sync works on."""
        s = self.settings
        return SyncBook(
            runs=self.sync_runs,
            chunks=self.sync_chunks,
            pricing=self.order_book,
            policy=SyncPolicy(
                chunk_size=s.sync_chunk_size,
                licence_max_age_days=s.sync_licence_max_age_days,
                stuck_after=timedelta(minutes=s.watchdog_deadline_minutes),
            ),
            meter=self.sync_meter,
            after_step=_crash_after(s.sync_step_crash_after),
        )

    @cached_property
    def ledger_reader(self) -> LedgerReader:
        """The ledger's month aggregates, as the reports read them."""
        return self.ledger

    @cached_property
    def reports_book(self) -> ReportsBook:
        """The records the licence and revenue reports read."""
        return ReportsBook(
            ledger=self.ledger_reader,
            customers=self.customers,
            resellers=self.resellers,
            clock=self.clock,
        )

    @repository
    def usage_imports(self) -> TableRepository[UsageImport]:
        """Azure usage imports, one per billing month."""
        return self.table_repository(
            "UsageImports", UsageImport, lambda i: (IMPORTS_PARTITION, i.month), outbox=True
        )

    @cached_property
    def usage_rows(self) -> UsageRows:
        """The usage report's aggregated rows."""
        from shared.adapters.tables.usage import TableUsageRows

        return TableUsageRows(self.store)

    @cached_property
    def usage_book(self) -> UsageBook:
        """The records the usage import and report work on."""
        s = self.settings
        return UsageBook(
            imports=self.usage_imports,
            rows=self.usage_rows,
            customers=self.customers,
            resellers=self.resellers,
            clock=self.clock,
            scheduler=self.queues,
            policy=UsagePolicy(
                currency=s.usage_billing_currency, poll_seconds=s.usage_poll_seconds
            ),
        )

    def transient_records(self) -> list[TransientRecords]:
        """Every kind of record with transient states the watchdog looks after.

        A new kind registers here.
        """
        return [
            ProvisioningCustomers(self.customer_book),
            InFlightOrders(self.order_book),
            PendingChanges(self.order_book),
            StaleRuns(self.sync_book),
        ]

    @cached_property
    def housekeeping(self) -> Housekeeping:
        """The records and settings of `timer_housekeeping`."""
        return Housekeeping(
            idempotency=self.idempotency,
            invitations=self.invitations,
            notifications=self.notifications,
            transient=self.transient_records(),
            clock=self.clock,
            retention=timedelta(days=self.settings.retention_days),
            poison_depths=self.queues.poison_depths,
            resellers=self.resellers,
            sync_runs=self.sync_runs,
            sync_chunks=self.sync_chunks,
            sync_retention=timedelta(days=self.settings.sync_run_retention_days),
        )

    @repository
    def migrations_done(self) -> TableRepository[MigrationRecord]:
        """Migrations that have finished, by name."""
        return self.table_repository("Migrations", MigrationRecord, migrations.key)

    def migrations(self) -> list[Migration]:
        """The data upgrades this version relies on, in order (see services/migrations.py)."""
        return [
            Migration(
                "claim-rows",
                lambda: claims.backfill_all(
                    (r.slug for r in self.resellers.iterate(RESELLER_PARTITION)),
                    self.customers,
                    self.users,
                    staff=DISTRIBUTOR,
                ),
            ),
            Migration("outbox-partition-markers", self._mark_pending_outbox_partitions),
            # Subscriptions written before the ledger existed get their facts, once.
            Migration("ledger-facts", lambda: ledger.backfill(self.subscriptions)),
        ]

    def _mark_pending_outbox_partitions(self) -> int:
        from shared.adapters.tables.outbox_index import OutboxIndex

        index = OutboxIndex(self.store)
        return sum(index.mark_pending(table) for table in self.outbox_tables())

    def migrate(self) -> list[str]:
        """Run the data upgrades not yet done; the names of those run."""
        return migrations.run_pending(self.migrations_done, self.migrations(), self.clock)

    def outbox_tables(self) -> list[str]:
        """Every table that may hold outbox rows: those of the repositories built with one."""
        repos = [getattr(self, name) for name in _REPOSITORIES]
        return [r.table_name for r in repos if getattr(r, "outbox", None) is not None]

    def sweep_outbox(self) -> int:
        """Re-send outbox rows older than OUTBOX_MIN_AGE_SECONDS."""
        from shared.adapters.queues import sweep_cutoff

        cutoff = sweep_cutoff(self.clock.now(), self.settings.outbox_min_age_seconds)
        return self.outbox.sweep(self.store, self.outbox_tables(), cutoff)


def _crash_after(step: str | None) -> Callable[[str], None] | None:
    """Tests only: exit the process at once after sub-step `step`, as a SIGKILL would
    (ORDER_STEP_CRASH_AFTER, SYNC_STEP_CRASH_AFTER)."""
    if not step:
        return None

    def check(done: str) -> None:
        if done == step:
            os._exit(137)

    return check


_lock = threading.Lock()
_container: Container | None = None


def container() -> Container:
    """The process's container, built on first use."""
    global _container
    if _container is None:
        with _lock:
            if _container is None:
                _container = Container()
    return _container


def use(replacement: Container | None) -> None:
    """Swap the container (tests); None resets to a fresh one on next use."""
    global _container
    _container = replacement

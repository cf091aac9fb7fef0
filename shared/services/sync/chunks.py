"""One chunk of a run: each customer's subscriptions and licence counts from Partner Center.

For each customer from the chunk's checkpoint (`position`): its subscriptions in Partner
Center (unless licences only) and its licence counts, against its Subscriptions partition (not
read for a customer this run added: it has none). A subscription Partner Center has and we do
not is added (origin Synced, priced at today's catalog for the customer; one whose offer is not
in the catalog has no price and a note); a known one takes Partner Center's facts through
`Subscription.apply_facts` (the change in flight, if any, stays); one that moved to expired,
cancelled, disabled or deleted is counted ended. Only what changed is written, a transaction
per customer (per 100 of its records), each record If-Match: a concurrent change through the
API makes the customer be read again and done once more. A customer whose reads fail is an
error line, and its id is kept on the chunk (every one) and on the run, for the next delta to
read it again; the chunk goes on.
When Partner Center's rate limit asks for a longer wait than a step may sleep (`Throttled`), or
the chunk has worked for `SyncPolicy.chunk_time_budget`, the chunk checkpoints and re-enqueues
its message with that delay (`StepScheduler.send_later`) instead.

The chunk is checkpointed every few customers (position, counts, errors, Partner Center calls);
a redelivered message continues from there. Records carry what this run did to them
(`sync_run`/`sync_change`), so a customer redone after a crash is counted as the first time.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from shared.domain.catalog import Product
from shared.domain.customers import Customer
from shared.domain.errors import (
    ConcurrencyConflict,
    Conflict,
    DomainError,
    NotFound,
    Throttled,
    UpstreamRejected,
    UpstreamUnavailable,
    ValidationFailed,
)
from shared.domain.identity import RESELLER_PARTITION, Reseller
from shared.domain.outbox import Queue
from shared.domain.subscriptions import (
    LicenceCount,
    Subscription,
    SubscriptionFacts,
    SubscriptionOrigin,
)
from shared.domain.sync import (
    ChunkCustomer,
    ChunkStatus,
    SyncChange,
    SyncChunk,
    SyncCounts,
    SyncError,
    SyncMessage,
    chunk_row_key,
    marks_text,
    sync_marks,
    sync_row_key,
)
from shared.ports import PartnerCenter
from shared.services.catalog import CatalogReader, CatalogSnapshot
from shared.services.orders.book import OrderBook
from shared.services.subscriptions.pricing import price_after, terms_of
from shared.services.subscriptions.reading import (
    licence_count_by_part,
    reprice,
    sku_part_number,
)
from shared.services.sync.book import SyncBook
from shared.services.sync.finish import settle
from shared.services.sync.tenants import parallel

log = logging.getLogger(__name__)

ENDED_STATUSES = frozenset({"expired", "cancelled", "deleted", "disabled"})
# A subscription Partner Center no longer lists as this reseller's is ended here with this
# status (and a note saying why): not "Cancelled", which is Partner Center's own word.
GONE_STATUS = "Deleted"
ENDED_HERE = "Ended here: "
# Partner Center may list a subscription a little after the order that made it: a record this
# young is not ended for being missing.
LISTING_LAG = timedelta(hours=1)
_WRITES_PER_BATCH = 100
# A chunk put off by the rate limit comes back within this long whatever Retry-After says.
_LONGEST_WAIT_SECONDS = 3600.0


class _ChunkCatalog(CatalogReader):
    """The catalog as it stands when the chunk starts: the import stamp and each reseller's
    catalog are read once for the chunk, not once per subscription priced."""

    def __init__(self, inner: CatalogReader) -> None:  # no super(): every read goes to `inner`
        self.inner = inner
        self.distributor_markup_percent = inner.distributor_markup_percent
        self._imports: dict[str, str | None] = {}
        self._snapshots: dict[str, CatalogSnapshot] = {}

    def import_id(self, market: str) -> str | None:
        """The market's import stamp (read once)."""
        if market not in self._imports:
            self._imports[market] = self.inner.import_id(market)
        return self._imports[market]

    def market_products(self, market: str, import_id: str | None) -> dict[str, Product]:
        """The market's products (the process's cache)."""
        return self.inner.market_products(market, import_id)

    def snapshot(self, slug: str) -> CatalogSnapshot:
        """The reseller's catalog (read once)."""
        if slug not in self._snapshots:
            self._snapshots[slug] = self.inner.snapshot(slug)
        return self._snapshots[slug]


@dataclass
class _Context:
    """What every customer of the chunk shares: the run, the reseller, the catalog, and the
    customers that pricing needs."""

    book: SyncBook
    partner_center: PartnerCenter
    run_id: str
    reseller: Reseller
    products: dict[str, Product]
    pricing: OrderBook  # the order book, with the catalog read once for the chunk
    mpn_id: str  # the reseller's: only subscriptions whose reseller of record it is are its
    chunk: list[ChunkCustomer] = field(default_factory=list)
    _customers: dict[str, Customer] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def product(self, catalog_item_id: str | None) -> Product | None:
        if not catalog_item_id:
            return None
        return self.products.get(catalog_item_id.split(":")[0].upper())

    def customer(self, customer_id: str) -> Customer:
        """The customer a subscription is priced for. A chunk of mostly new customers (a first
        sync: every subscription is priced) reads its customers once, in one query of their
        key range (its ids are in key order); otherwise the few that need it are read one by
        one. Like the catalog, the customer is taken as it was when the chunk read it."""
        with self._lock:
            if self._customers is None:
                self._customers = {}
                new = sum(1 for cc in self.chunk if cc.new)
                if self.chunk and new * 2 >= len(self.chunk):
                    ids = sorted(cc.customer_id for cc in self.chunk)
                    wanted = set(ids)
                    read = self.book.customers.iterate(self.reseller.slug, rows=(ids[0], ids[-1]))
                    self._customers = {c.id: c for c in read if c.id in wanted}
            known = self._customers.get(customer_id)
        if known is not None:
            return known.model_copy()
        return self.book.customers.get(self.reseller.slug, customer_id)


@dataclass
class _Outcome:
    counts: SyncCounts = field(default_factory=SyncCounts)
    error: SyncError | None = None
    wait: float | None = None  # not done: Partner Center's rate limit asks to wait this long


def run_chunk(book: SyncBook, partner_center: PartnerCenter, message: SyncMessage) -> None:
    """Refresh the chunk's customers from its checkpoint on; the last chunk ends the run."""
    assert message.chunk is not None
    chunk = book.chunks.find(message.run_id, chunk_row_key(message.chunk))
    run = book.runs.find(message.reseller, sync_row_key(message.run_id))
    if chunk is None or run is None:
        log.warning("sync chunk %s/%s no longer exists", message.run_id, message.chunk)
        return
    if chunk.status is ChunkStatus.PENDING and not run.status.finished:
        reseller = book.resellers.get(RESELLER_PARTITION, run.reseller)
        catalog = _ChunkCatalog(book.pricing.catalog)
        market = catalog.market_products(reseller.country, catalog.import_id(reseller.country))
        products = {pid.upper(): p for pid, p in market.items()}
        pricing = replace(book.pricing, catalog=catalog)
        mpn_id = reseller.require_mpn_id()
        ctx = _Context(
            book, partner_center, run.id, reseller, products, pricing, mpn_id, chunk.customers
        )
        chunk = _work(ctx, chunk)
    settle(book, run.reseller, run.id)


def _work(ctx: _Context, chunk: SyncChunk) -> SyncChunk:
    book = ctx.book
    step = max(book.policy.checkpoint_every, 1)
    started = book.clock.now()
    with book.meter() as meter:
        seen = (0, 0, 0.0)
        while chunk.position < len(chunk.customers):
            group = chunk.customers[chunk.position : chunk.position + step]
            outcomes = parallel(book, group, lambda cc: _refresh(ctx, cc))
            book.step_done("chunk-writes")
            outcomes, wait = _until_wait(outcomes)
            for cc, outcome in outcomes:
                chunk.counts += outcome.counts
                if outcome.error is not None:
                    chunk.add_error(outcome.error)
                    chunk.failed_customers.append(cc.customer_id)
            now_seen = (meter.calls, meter.throttled, meter.waited_seconds)
            chunk.counts.partner_center_calls += now_seen[0] - seen[0]
            chunk.counts.throttled_waits += now_seen[1] - seen[1]
            chunk.counts.throttled_seconds += now_seen[2] - seen[2]
            seen = now_seen
            chunk.position += len(outcomes)
            if chunk.position >= len(chunk.customers):
                chunk.status = ChunkStatus.DONE
            if wait is not None:
                chunk.counts.throttled_waits += 1
                chunk.counts.throttled_seconds += wait
            chunk.updated_at = book.clock.now()
            chunk = book.chunks.update(chunk)
            book.step_done("checkpoint")
            if wait is None and chunk.status is ChunkStatus.PENDING:
                # Its time is up: go on in a new message, before the host's timeout.
                wait = 0.0 if chunk.updated_at - started >= book.policy.chunk_time_budget else None
            if wait is not None:
                _go_on_later(book, chunk, wait)
                return chunk
    if chunk.status is ChunkStatus.PENDING:  # an empty chunk
        chunk.status = ChunkStatus.DONE
        chunk = book.chunks.update(chunk)
    return chunk


def _until_wait(
    outcomes: list[tuple[ChunkCustomer, _Outcome]],
) -> tuple[list[tuple[ChunkCustomer, _Outcome]], float | None]:
    """The outcomes before the first customer the rate limit put off, and how long it asks to
    wait (None: none was). The customers after it are done again later (and counted then)."""
    for i, (_, outcome) in enumerate(outcomes):
        if outcome.wait is not None:
            return outcomes[:i], outcome.wait
    return outcomes, None


def _go_on_later(book: SyncBook, chunk: SyncChunk, wait: float) -> None:
    """Re-enqueue the chunk (checkpointed) to go on after `wait` seconds: this message ends
    without holding a worker while Partner Center's rate limit runs out or past the host's
    function timeout. A crash before the send leaves this message to be delivered again."""
    body = SyncMessage(reseller=chunk.reseller, run_id=chunk.run_id, chunk=chunk.number).body()
    delay = min(max(wait, 0.0), _LONGEST_WAIT_SECONDS)
    log.info("sync chunk %s/%s goes on in %.0fs", chunk.run_id, chunk.number, delay)
    book.scheduler.send_later(Queue.SYNC_RESELLER, body, delay)


def _refresh(ctx: _Context, cc: ChunkCustomer) -> _Outcome:
    """One customer: read, compare, write what changed (again once after a lost race)."""
    try:
        facts = [] if cc.licences_only else ctx.partner_center.subscription_facts(cc.tenant_id)
        licences = _licences(ctx, cc)
        try:
            return _apply(ctx, cc, facts, licences, known=None if cc.new else _known(ctx, cc))
        except (ConcurrencyConflict, Conflict):
            return _apply(ctx, cc, facts, licences, known=_known(ctx, cc))
    except Throttled as exc:
        return _Outcome(wait=exc.retry_after if exc.retry_after is not None else 60.0)
    except (UpstreamUnavailable, UpstreamRejected, NotFound, ConcurrencyConflict, Conflict) as exc:
        customer = ctx.book.customers.find(ctx.reseller.slug, cc.customer_id)
        return _Outcome(
            error=SyncError(
                customer_id=cc.customer_id,
                tenant_id=cc.tenant_id,
                customer_name=customer.name if customer is not None else None,
                message=f"not refreshed: {exc}",
                at=ctx.book.clock.now(),
            ),
        )


def _licences(ctx: _Context, cc: ChunkCustomer) -> list[LicenceCount] | None:
    """The tenant's licence counts; None when Partner Center will not give them (app+user
    only): the counts last stored stay."""
    try:
        return ctx.partner_center.licence_counts(cc.tenant_id)
    except UpstreamRejected as exc:
        if cc.licences_only:
            raise
        log.warning("licences of %s not read: %s", cc.customer_id, exc)
        return None


def _known(ctx: _Context, cc: ChunkCustomer) -> dict[str, Subscription]:
    return {s.id.lower(): s for s in ctx.book.subscriptions.iterate(cc.customer_id)}


def _apply(
    ctx: _Context,
    cc: ChunkCustomer,
    facts: list[SubscriptionFacts],
    licences: list[LicenceCount] | None,
    *,
    known: dict[str, Subscription] | None,
) -> _Outcome:
    book = ctx.book
    now = book.clock.now()
    records = dict(known or {})
    customer: Customer | None = None
    adds: list[Subscription] = []
    touched: dict[str, set[SyncChange]] = {}
    for f in facts:
        record = records.get(f.id.lower())
        if f.partner_id != ctx.mpn_id:
            # Another reseller's (the tenant moved, or has two): never added here; one we
            # hold moved away and ends here (the note does not name the other reseller).
            if record is not None and _end_here(record, "moved to another reseller", now):
                touched[record.id.lower()] = {SyncChange.ENDED}
            continue
        if record is None:
            if customer is None:
                customer = ctx.customer(cc.customer_id)
            record = _new_record(ctx, customer, f, now)
            records[f.id.lower()] = record
            adds.append(record)
            touched[record.id.lower()] = {SyncChange.ADDED}
            continue
        was_live = record.status.lower() not in ENDED_STATUSES
        changed = record.apply_facts(f, now)
        if record.live and (record.note or "").startswith(ENDED_HERE):
            record.note, changed = None, True  # listed as ours again
        unpriced = record.priced is None and record.live
        if changed or unpriced:
            if customer is None:
                customer = ctx.customer(cc.customer_id)
            if unpriced:
                changed = _price(ctx, customer, record) or changed
            else:
                reprice(ctx.pricing, customer, record)
        if changed:
            ended = was_live and record.status.lower() in ENDED_STATUSES
            touched[record.id.lower()] = {SyncChange.ENDED if ended else SyncChange.UPDATED}
    if not cc.licences_only:  # a full read: a live record Partner Center does not list ended
        listed = {f.id.lower() for f in facts}
        for key, record in records.items():
            if key not in listed and _end_here(record, "Partner Center no longer lists it", now):
                touched[key] = {SyncChange.ENDED}
    if licences is not None:
        for key, record in records.items():
            part = sku_part_number(ctx.product(record.catalog_item_id), record.catalog_item_id)
            count = licence_count_by_part(part, licences)
            assigned = count.assigned if count is not None else None
            if assigned != record.assigned_licences:
                record.assigned_licences = assigned
                if key not in touched or SyncChange.ADDED not in touched[key]:
                    touched.setdefault(key, set()).add(SyncChange.LICENCES)
    updates = [records[k] for k in touched if records[k].etag is not None]
    outcome = _Outcome(counts=SyncCounts(customers_refreshed=1))
    for key, marks in touched.items():
        record = records[key]
        done = sync_marks(record.sync_run, record.sync_change, ctx.run_id)
        record.sync_run, record.sync_change = ctx.run_id, marks_text(done | marks)
        record.updated_at = now
    writes = [*adds, *updates]
    for start in range(0, len(writes), _WRITES_PER_BATCH):
        batch = writes[start : start + _WRITES_PER_BATCH]
        book.subscriptions.save_all(
            cc.customer_id,
            adds=[r for r in batch if r.etag is None],
            updates=[r for r in batch if r.etag is not None],
        )
    # Count what this run did to each record, including what an earlier, interrupted delivery
    # wrote (the marks): a customer redone after a crash is counted once, as the first time.
    for record in records.values():
        marks = sync_marks(record.sync_run, record.sync_change, ctx.run_id)
        outcome.counts.tally(marks, customer=False)
    return outcome


def _new_record(
    ctx: _Context, customer: Customer, facts: SubscriptionFacts, now: datetime
) -> Subscription:
    """A subscription found in Partner Center: origin Synced, priced at today's catalog (no
    price and a note when its offer cannot be priced here)."""
    record = Subscription.from_facts(
        ctx.reseller.slug, customer.id, facts, now, origin=SubscriptionOrigin.SYNCED
    )
    _price(ctx, customer, record)
    return record


def _price(ctx: _Context, customer: Customer, record: Subscription) -> bool:
    """Price a synced subscription at today's catalog (a note says why when it cannot be, and
    goes once it can: an unpriced one is tried again by every run); whether it changed."""
    before = (record.priced, record.note)
    terms = terms_of(record)
    try:
        if terms is None:
            raise ValueError("Partner Center gives it no offer or no seats")
        record.priced = price_after(ctx.pricing, ctx.reseller, customer, None, terms)
        record.note = None
    except (DomainError, ValueError) as exc:
        errors = exc.errors if isinstance(exc, ValidationFailed) else []
        reason = errors[0].message if errors else str(exc)
        record.note = f"No price: the offer {record.catalog_item_id or '?'} {reason}"
    return (record.priced, record.note) != before


def _end_here(record: Subscription, why: str, now: datetime) -> bool:
    """End a record Partner Center no longer lists as this reseller's (status Deleted, a note
    saying why); not one already ended, with a change in flight, or too new to be listed yet.
    Whether it changed."""
    if record.status.lower() in ENDED_STATUSES or record.changing or record.pending_change:
        return False
    if record.created_at > now - LISTING_LAG:
        return False
    record.status = GONE_STATUS
    record.note = f"{ENDED_HERE}{why} ({now:%Y-%m-%d})"
    return True

"""The customer phase of a run: the reseller's tenants in Partner Center against its customers.

One read of every page of the reseller's tenants (only an exact `associatedPartnerId`) and one
read of its Customers partition; then, compare-before-write, in partition batches: a new tenant
becomes an Active customer (origin ExistingTenant, its claims taken in the same transaction),
company data Partner Center changed is copied where ours was not edited here, a customer no
longer listed is flagged (`unassociated_since`, never deleted) and unflagged when listed again,
and the qualification of an education / government / nonprofit customer is read until
Microsoft decides it. Every record written carries the run (`sync_run`, `sync_change`), so a
redelivered phase counts what the first attempt did without writing it again.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from shared.domain.customers import Customer, CustomerStatus, Qualification, Tenant
from shared.domain.errors import (
    ClaimTaken,
    ConcurrencyConflict,
    Conflict,
    NotFound,
    UpstreamRejected,
    UpstreamUnavailable,
)
from shared.domain.identity import Reseller
from shared.domain.sync import (
    SyncChange,
    SyncCounts,
    SyncError,
    SyncRun,
    marks_text,
    sync_marks,
)
from shared.ports import Clock, PartnerCenter
from shared.services import customers as customer_service
from shared.services.sync.book import SyncBook

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

# Segments whose customers Microsoft verifies (and the verification ends Approved or Rejected).
QUALIFIED_SEGMENTS = frozenset({"education", "government", "nonprofit"})
_DECIDED = frozenset({Qualification.APPROVED, Qualification.REJECTED})
# Records per transaction: a new customer is 3 operations (its row, its domain and tenant claims).
_ADDS_PER_BATCH = 30
_UPDATES_PER_BATCH = 100


@dataclass
class CustomerPhase:
    """What the phase found: the reseller's customers after it, and what it counted."""

    customers: list[Customer]
    counts: SyncCounts
    errors: list[SyncError] = field(default_factory=list)

    def added(self, run_id: str) -> set[str]:
        """Ids of the customers this run added."""
        return {
            c.id
            for c in self.customers
            if SyncChange.ADDED in sync_marks(c.sync_run, c.sync_change, run_id)
        }


def reconcile(
    book: SyncBook, partner_center: PartnerCenter, reseller: Reseller, run: SyncRun
) -> CustomerPhase:
    """Bring the reseller's Customers partition in line with its tenants in Partner Center."""
    now = book.clock.now()
    tenants = {t.id.lower(): t for t in customer_service.reseller_tenants(partner_center, reseller)}
    existing = list(book.customers.iterate(reseller.slug))
    by_tenant = {c.tenant_id.lower(): c for c in existing if c.tenant_id}
    errors: list[SyncError] = []

    new = [
        _new_customer(t, reseller.slug, book.clock, run.id)
        for key, t in tenants.items()
        if key not in by_tenant
    ]
    changed: list[Customer] = []
    for customer in existing:
        if customer.status is not CustomerStatus.ACTIVE or not customer.tenant_id:
            continue  # a customer being provisioned belongs to its provisioning step
        tenant = tenants.get(customer.tenant_id.lower())
        if _take(customer, tenant, run.id, now):
            changed.append(customer)

    qualify = [
        c
        for c in [*existing, *new]
        if c.tenant_id
        and c.status is CustomerStatus.ACTIVE
        and c.unassociated_since is None
        and c.segment in QUALIFIED_SEGMENTS
        and c.qualification not in _DECIDED
    ]
    for customer, outcome in parallel(book, qualify, lambda c: _qualification(partner_center, c)):
        if isinstance(outcome, SyncError):
            errors.append(outcome)
        elif outcome is not customer.qualification:
            customer.qualification = outcome
            _mark(customer, run.id, SyncChange.UPDATED, now)
            if customer.etag is not None and all(c.id != customer.id for c in changed):
                changed.append(customer)

    def holder_instead(customer: Customer, exc: ClaimTaken) -> Customer | None:
        # A record added meanwhile (an import) holds the tenant: that one is updated instead.
        holder = book.customers.find(reseller.slug, exc.owner)
        same = (
            holder is not None
            and (holder.tenant_id or "").lower() == (customer.tenant_id or "").lower()
        )
        if holder is None or not same:
            errors.append(_clash(customer, exc, now))
            return None
        existing.append(holder)
        if holder.status is CustomerStatus.ACTIVE and _take(
            holder, tenants.get((holder.tenant_id or "").lower()), run.id, now
        ):
            changed.append(holder)
        return None

    saved_new = _add_all(book, reseller.slug, new, holder_instead)
    saved_changed = _update_all(book, reseller.slug, changed, tenants, run.id, errors)
    written = {c.id: c for c in [*saved_new, *saved_changed]}
    known = {e.id for e in existing}
    after = [written.get(c.id, c) for c in existing] + [c for c in saved_new if c.id not in known]
    return CustomerPhase(after, _count(after, run.id), errors)


def _new_customer(tenant: Tenant, reseller: str, clock: Clock, run_id: str) -> Customer:
    customer = customer_service.from_tenant(tenant, reseller, clock)
    _mark(customer, run_id, SyncChange.ADDED, customer.created_at)
    return customer


def _mark(customer: Customer, run_id: str, change: SyncChange, now: datetime) -> None:
    marks = sync_marks(customer.sync_run, customer.sync_change, run_id)
    if SyncChange.ADDED in marks:
        return  # a customer added by this run stays "added", whatever else the run did to it
    customer.sync_run, customer.sync_change = run_id, marks_text({*marks, change})


def _take(customer: Customer, tenant: Tenant | None, run_id: str, now: datetime) -> bool:
    """Apply what the tenant list says to one customer; whether it changed."""
    if tenant is None:
        if customer.unassociated_since is not None:
            return False
        customer.unassociated_since = now
        _mark(customer, run_id, SyncChange.UNASSOCIATED, now)
        return True
    changed = customer_service.take_company_data(customer, tenant)
    if customer.unassociated_since is not None:
        customer.unassociated_since = None
        _mark(customer, run_id, SyncChange.REASSOCIATED, now)  # the chunks refresh it fully
        changed = True
    if changed:
        _mark(customer, run_id, SyncChange.UPDATED, now)
    return changed


def _qualification(partner_center: PartnerCenter, customer: Customer) -> Qualification | SyncError:
    assert customer.tenant_id is not None
    try:
        return partner_center.customer_qualification(customer.tenant_id, customer.segment)
    except (UpstreamUnavailable, UpstreamRejected, NotFound) as exc:
        return SyncError(
            customer_id=customer.id,
            tenant_id=customer.tenant_id,
            customer_name=customer.name,
            message=f"qualification for {customer.segment} could not be read: {exc}",
            at=customer.updated_at,
        )


def parallel(book: SyncBook, items: Iterable[T], work: Callable[[T], R]) -> list[tuple[T, R]]:
    """`work` on each item, a few at a time (Partner Center reads), in the items' order. Each
    task runs in a copy of the caller's context, so the call meter counts it."""
    items = list(items)
    if len(items) <= 1 or book.policy.workers <= 1:
        return [(i, work(i)) for i in items]
    with ThreadPoolExecutor(max_workers=book.policy.workers) as pool:
        futures = [pool.submit(contextvars.copy_context().run, work, i) for i in items]
        return [(i, f.result()) for i, f in zip(items, futures, strict=True)]


def _add_all(
    book: SyncBook,
    slug: str,
    new: list[Customer],
    taken: Callable[[Customer, ClaimTaken], Customer | None],
) -> list[Customer]:
    """Insert the new customers with their claims, a batch per transaction (a few at a time);
    a batch refused (a claim another record holds) is done one by one, so one clash stops no
    one else."""

    def one(batch: list[Customer]) -> list[Customer]:
        claims = [(claim, c.id) for c in batch for claim in c.claims()]
        try:
            return book.customers.save_all(slug, adds=batch, claims=claims)
        except Conflict:
            pass
        saved: list[Customer] = []
        for customer in batch:
            try:
                saved.append(book.customers.add(customer, claims=customer.claims()))
            except ClaimTaken as exc:
                taken(customer, exc)
        return saved

    batches = [new[i : i + _ADDS_PER_BATCH] for i in range(0, len(new), _ADDS_PER_BATCH)]
    return [c for _, saved in parallel(book, batches, one) for c in saved]


def _clash(customer: Customer, exc: ClaimTaken, now: datetime) -> SyncError:
    what = "tenant" if exc.kind == "tenant" else f"domain {customer.domain}"
    return SyncError(
        tenant_id=customer.tenant_id,
        customer_name=customer.name,
        customer_id=exc.owner,
        message=f"not added: the customer {exc.owner} already holds its {what}",
        at=now,
    )


def _update_all(
    book: SyncBook,
    slug: str,
    changed: list[Customer],
    tenants: dict[str, Tenant],
    run_id: str,
    errors: list[SyncError],
) -> list[Customer]:
    """Replace the changed customers, a batch per transaction (If-Match each). A batch that
    lost a race with a person's change is done one by one: the customer that changed is read
    again and the sync's change applied to it once more."""
    saved: list[Customer] = []
    for start in range(0, len(changed), _UPDATES_PER_BATCH):
        batch = changed[start : start + _UPDATES_PER_BATCH]
        for c in batch:
            c.updated_at = book.clock.now()
        try:
            saved += book.customers.save_all(slug, updates=batch)
            continue
        except ConcurrencyConflict:
            pass
        for customer in batch:
            try:
                saved.append(book.customers.update(customer))
                continue
            except ConcurrencyConflict:
                pass
            again = _redo(book, customer, tenants, run_id)
            if again is None:
                errors.append(
                    SyncError(
                        customer_id=customer.id,
                        tenant_id=customer.tenant_id,
                        customer_name=customer.name,
                        message="not updated: the customer kept changing; the next run tries again",
                        at=book.clock.now(),
                    )
                )
            else:
                saved.append(again)
    return saved


def _redo(
    book: SyncBook, customer: Customer, tenants: dict[str, Tenant], run_id: str
) -> Customer | None:
    """Read the customer again and apply the sync's change to it once more (None: lost again)."""
    current = book.customers.find(customer.reseller, customer.id)
    if current is None or current.status is not CustomerStatus.ACTIVE or not current.tenant_id:
        return current
    now = book.clock.now()
    changed = _take(current, tenants.get(current.tenant_id.lower()), run_id, now)
    if customer.qualification is not current.qualification and customer.sync_run == run_id:
        current.qualification = customer.qualification
        _mark(current, run_id, SyncChange.UPDATED, now)
        changed = True
    if not changed:
        return current
    current.updated_at = now
    try:
        return book.customers.update(current)
    except ConcurrencyConflict:
        return None


def _count(customers: Iterable[Customer], run_id: str) -> SyncCounts:
    """The phase's figures, from the marks the run left on the records (each written once)."""
    counts = SyncCounts()
    for c in customers:
        counts.tally(sync_marks(c.sync_run, c.sync_change, run_id), customer=True)
    return counts

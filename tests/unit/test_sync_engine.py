"""The sync engine with in-memory fakes: the customer phase, the chunks, delta runs, crashes at
each step boundary, a poisoned chunk, finishing exactly once, the counts and the e-mail."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from azure.functions.queue import QueueMessage

from functions._queue import run_step
from shared.domain.claims import Claim
from shared.domain.customers import (
    Address,
    Contact,
    CustomerImport,
    CustomerOrigin,
    CustomerStatus,
    CustomerUpdate,
    Qualification,
)
from shared.domain.errors import UpstreamUnavailable
from shared.domain.identity import NotificationEvent, Principal, Role, SignInKind
from shared.domain.notifications import Notification
from shared.domain.outbox import Queue
from shared.domain.subscriptions import PendingChange, Subscription, SubscriptionOrigin
from shared.domain.sync import (
    AuditEvent,
    ChunkStatus,
    SyncChunk,
    SyncMessage,
    SyncRun,
    SyncStatus,
    SyncTrigger,
    chunk_row_key,
    sync_row_key,
)
from shared.services import customers, sync
from shared.services.sync import runs
from shared.services.sync.book import SyncBook, SyncPolicy
from shared.services.sync.finish import settle
from shared.services.watchdog import watch
from tests.catalog_fakes import install_catalog
from tests.fakes import FakeClock, InMemoryRepository, reseller_ids
from tests.functions.world import World, add_customers, build_world
from tests.order_fakes import FakeOrderPartnerCenter, install_orders
from tests.subscription_fakes import facts_of, seed_subscription

AM = Principal("u1", "demo", None, Role.ACCOUNT_MANAGER, "owner@demo.example", SignInKind.PLATFORM)
DEMO_TENANT = reseller_ids("demo")[0]


class Crash(BaseException):
    """The process died here."""


class SyncPartnerCenter:
    """Partner Center for the sync: tenants from the customer fake, each tenant's subscriptions
    in its own ordering fake, audit records and qualifications as a test sets them."""

    def __init__(self, base: Any, clock: FakeClock) -> None:
        self.base = base  # FakeOrderPartnerCenter → customers fake → catalog fake
        self.clock = clock
        self.per_tenant: dict[str, FakeOrderPartnerCenter] = {}
        self.audit: list[AuditEvent] = []
        self.qualifications: dict[str, Qualification] = {}
        self.calls: list[str] = []
        self.fail_tenants: dict[str, Exception] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)

    def _call(self, name: str) -> None:
        with self._lock:
            self.calls.append(name)

    def tenant(self, tenant_id: str) -> FakeOrderPartnerCenter:
        """The ordering fake of one tenant."""
        if tenant_id not in self.per_tenant:
            self.per_tenant[tenant_id] = FakeOrderPartnerCenter(
                fallback=self.base.fallback, clock=self.clock
            )
        return self.per_tenant[tenant_id]

    def customer_tenants(self, *, indirect_reseller_id: str | None = None) -> Iterator[Any]:
        self._call("customer_tenants")
        yield from self.base.customer_tenants(indirect_reseller_id=indirect_reseller_id)

    def subscription_facts(self, customer_tenant: str) -> list[Any]:
        self._call("subscription_facts")
        if customer_tenant in self.fail_tenants:
            raise self.fail_tenants[customer_tenant]
        return self.tenant(customer_tenant).subscription_facts(customer_tenant)

    def licence_counts(self, customer_tenant: str) -> list[Any]:
        self._call("licence_counts")
        return self.tenant(customer_tenant).licence_counts(customer_tenant)

    def audit_events(self, since: datetime, until: datetime) -> Iterator[AuditEvent]:
        self._call("audit_events")
        yield from (e for e in self.audit if since <= e.at < until)

    def customer_qualification(self, customer_tenant: str, segment: str) -> Qualification:
        self._call("customer_qualification")
        return self.qualifications.get(customer_tenant, Qualification.NONE)


@dataclass
class Harness:
    world: World
    book: SyncBook
    pc: SyncPartnerCenter
    runs: InMemoryRepository[SyncRun]
    chunks: InMemoryRepository[SyncChunk]
    subs: InMemoryRepository[Subscription]
    notes: InMemoryRepository[Notification]
    queue: list[tuple[dict[str, Any], int]] = field(default_factory=list)

    @property
    def c(self) -> Any:
        return self.world.container

    @property
    def clock(self) -> FakeClock:
        return self.world.clock

    def add_tenant(self, name: str, reseller_tenant: str = DEMO_TENANT, **fields: Any) -> Any:
        fields.setdefault("address", Address(country="CZ", city="Praha", postcode="110 00"))
        fields.setdefault("contact", Contact(first_name="Eva", email=f"eva@{name}.example"))
        return self.pc.base.fallback.add_tenant(
            reseller_tenant, f"{name}.onmicrosoft.com", f"{name.title()} s.r.o.", **fields
        )

    def customer_of(self, tenant_id: str) -> Any:
        found = [c for c in self.c.customers.iterate("demo") if c.tenant_id == tenant_id]
        assert len(found) == 1, found
        return found[0]

    def give(self, tenant_id: str, sub: Subscription, assigned: int = 0) -> None:
        """Partner Center holds `sub` for the tenant (with `assigned` licences)."""
        fake = self.pc.tenant(tenant_id)
        fake.add_subscription(facts_of(sub))
        fake.assigned[sub.id] = assigned

    def start(self, trigger: SyncTrigger = SyncTrigger.NIGHTLY) -> SyncRun:
        run, _ = runs.start(self.runs, self.clock, "demo", trigger, cooldown=timedelta(0))
        return run

    def pump(self, *, fail_after: int | None = None) -> None:
        """Deliver the queued sync messages (outbox rows) through the queue edge until none is
        left; a message that raises is delivered again, as the host does, up to 5 times."""
        for m in self.runs.sent:
            if m.queue is Queue.SYNC_RESELLER:
                self.queue.append((dict(m.body), 1))
        self.runs.sent.clear()
        for _ in range(2000):
            if not self.queue:
                return
            body, count = self.queue.pop(0)
            msg = QueueMessage(id="m", body=json.dumps(body).encode(), dequeue_count=count)
            try:
                run_step(
                    msg,
                    SyncMessage,
                    lambda m: sync.handle(self.book, self.pc, m),
                    lambda m, failure: sync.give_up(self.book, m, failure),
                )
            except Exception:
                if count < 5:
                    self.queue.append((body, count + 1))
            for m in self.runs.sent:
                if m.queue is Queue.SYNC_RESELLER:
                    self.queue.append((dict(m.body), 1))
            self.runs.sent.clear()
        raise AssertionError("the sync never ended")

    def run(self, trigger: SyncTrigger = SyncTrigger.NIGHTLY) -> SyncRun:
        started = self.start(trigger)
        self.pump()
        return self.runs.get("demo", sync_row_key(started.id))

    def versions(self) -> dict[tuple[str, str], str | None]:
        """Each data record's ETag (a write changes it)."""
        return {
            (type(r).__name__, f"{getattr(r, 'customer_id', '')}/{r.id}"): r.etag
            for r in self._data()
        }

    def _data(self) -> list[Any]:
        return [*self.c.customers.rows.values(), *self.subs.rows.values()]

    def snapshot(self) -> list[str]:
        """Every data record's content, without what differs between two worlds (random ids,
        ETags, times, which run did it), sorted."""
        skip = {
            "etag",
            "id",
            "tenant_id",
            "customer_id",
            "request_id",
            "domain",
            "sync_run",
            "updated_at",
            "refreshed_at",
            "created_at",
            "status_since",
        }
        return sorted(
            json.dumps(r.model_dump(mode="json", exclude=skip), sort_keys=True)
            for r in self._data()
        )


@pytest.fixture
def h() -> Harness:
    return make_harness()


def make_harness() -> Harness:
    """demo's world: a catalog, in-memory records, the sync's Partner Center, no customers."""
    w = build_world()
    install_catalog(w.container, w.clock, {})
    add_customers(w)
    order_book = install_orders(w.container)
    pc = SyncPartnerCenter(w.container.partner_center, w.clock)
    w.container.__dict__["partner_center"] = pc
    sync_runs = InMemoryRepository[SyncRun](lambda r: (r.reseller, sync_row_key(r.id)))
    sync_chunks = InMemoryRepository[SyncChunk](lambda c: (c.run_id, chunk_row_key(c.number)))

    class Live:
        """The calls made so far inside the block, read at any moment."""

        throttled = 0
        waited_seconds = 0.0

        def __init__(self) -> None:
            self.start = len(pc.calls)

        @property
        def calls(self) -> int:
            return len(pc.calls) - self.start

    @contextmanager
    def live() -> Iterator[Live]:
        yield Live()

    book = SyncBook(
        runs=sync_runs,
        chunks=sync_chunks,
        pricing=order_book,
        policy=SyncPolicy(chunk_size=2, checkpoint_every=1, workers=1),
        meter=live,
    )
    # The customers the world seeded (no tenant) stay out of the way of these tests.
    for c in list(w.container.customers.iterate("demo")):
        w.container.customers.delete(c)
    return Harness(
        w,
        book,
        pc,
        sync_runs,
        sync_chunks,
        order_book.subscriptions,  # type: ignore[arg-type]
        w.container.notifications,
    )


def _sub(h: Harness, customer_id: str, **over: Any) -> Subscription:
    """A subscription record as an order would have made it (also known to the base fake)."""
    return seed_subscription(h.c, "demo", customer_id, **over)


def _emails(h: Harness) -> list[Notification]:
    return [n for n in h.notes.rows.values() if n.id.startswith("sync-")]


# --- the customer phase -----------------------------------------------------------------------


def test_only_tenants_whose_partner_id_equals_the_resellers_become_its_customers(
    h: Harness,
) -> None:
    mine = h.add_tenant("mine")
    h.add_tenant("theirs", reseller_tenant=DEMO_TENANT + "0")  # shares demo's id as a prefix
    run = h.run()
    assert run.status is SyncStatus.SUCCEEDED
    found = list(h.c.customers.iterate("demo"))
    assert [c.tenant_id for c in found] == [mine.id]
    customer = found[0]
    assert customer.status is CustomerStatus.ACTIVE
    assert customer.origin is CustomerOrigin.EXISTING_TENANT
    assert h.c.customers.claim_owner("demo", Claim("tenant", mine.id)) == customer.id
    assert run.counts.customers_added == 1


def test_a_tenant_imported_earlier_is_updated_never_added_twice(h: Harness) -> None:
    tenant = h.add_tenant("imported")
    imported = customers.import_existing(
        h.c.customer_book, h.pc, AM, "demo", CustomerImport(tenant_id=tenant.id)
    )
    h.pc.base.fallback.tenants[tenant.id] = replace(tenant, company_name="Renamed a.s.")
    run = h.run()
    found = list(h.c.customers.iterate("demo"))
    assert [c.id for c in found] == [imported.id]
    assert found[0].name == "Renamed a.s."
    assert (run.counts.customers_added, run.counts.customers_updated) == (0, 1)


def test_company_data_follows_partner_center_except_fields_a_person_edited_here(
    h: Harness,
) -> None:
    tenant = h.add_tenant("edited")
    h.run()
    customer = h.customer_of(tenant.id)
    contact = {
        "firstName": "Local",
        "lastName": "Person",
        "email": "l@p.cz",
        "phone": "+420601123456",
    }
    edited = customers.update(
        h.c.customer_book,
        AM,
        "demo",
        customer.id,
        customer.etag,
        CustomerUpdate.model_validate({"contact": contact}),
    )
    assert edited.edited_fields == ["contact"]
    moved = Address(country="CZ", street="Nová 2", city="Brno", postcode="602 00")
    h.pc.base.fallback.tenants[tenant.id] = replace(
        tenant, address=moved, contact=Contact(first_name="Remote", email="r@x.cz")
    )
    h.clock.advance(days=1)
    h.run()
    after = h.customer_of(tenant.id)
    assert after.address == moved  # Partner Center's, as nobody changed it here
    assert after.contact.first_name == "Local"  # ours: a person edited it


def test_a_customer_changed_through_the_api_during_the_phase_is_read_again_and_updated(
    h: Harness,
) -> None:
    tenant = h.add_tenant("racing")
    h.run()
    customer = h.customer_of(tenant.id)
    h.pc.base.fallback.tenants[tenant.id] = replace(tenant, company_name="Racing Renamed a.s.")
    inner = h.c.customers.save_all
    raced: list[bool] = []

    def racing_save_all(partition: str, **kw: Any) -> Any:
        if kw.get("updates") and not raced:  # a person edits it between the read and the write
            raced.append(True)
            other = h.c.customers.get("demo", customer.id)
            other.industry = "Retail"
            h.c.customers.update(other)
        return inner(partition, **kw)

    h.c.customers.save_all = racing_save_all
    h.clock.advance(days=1)
    run = h.run()
    after = h.customer_of(tenant.id)
    assert (after.name, after.industry) == ("Racing Renamed a.s.", "Retail")
    assert run.counts.customers_updated == 1 and run.errors_total == 0


def test_a_customer_no_longer_listed_is_flagged_never_deleted_and_unflagged_when_back(
    h: Harness,
) -> None:
    tenant = h.add_tenant("leaving")
    h.run()
    del h.pc.base.fallback.tenants[tenant.id]
    h.clock.advance(days=1)
    gone = h.run()
    flagged = h.customer_of(tenant.id)
    assert flagged.unassociated_since == gone.started_at
    assert gone.counts.customers_unassociated == 1
    h.pc.base.fallback.tenants[tenant.id] = tenant
    h.clock.advance(days=1)
    back = h.run()
    assert h.customer_of(tenant.id).unassociated_since is None
    assert back.counts.customers_updated == 1


def test_qualification_is_read_for_an_education_customer_until_microsoft_decides(
    h: Harness,
) -> None:
    tenant = h.add_tenant("school")
    h.run()
    customer = h.customer_of(tenant.id)
    customer.segment = "education"
    h.c.customers.update(customer)
    h.pc.qualifications[tenant.id] = Qualification.PENDING
    h.clock.advance(days=1)
    h.run(SyncTrigger.MANUAL)
    assert h.customer_of(tenant.id).qualification is Qualification.PENDING
    h.pc.qualifications[tenant.id] = Qualification.APPROVED
    h.clock.advance(days=1)
    h.run(SyncTrigger.MANUAL)
    assert h.customer_of(tenant.id).qualification is Qualification.APPROVED
    h.pc.calls.clear()
    h.clock.advance(days=1)
    h.run(SyncTrigger.MANUAL)
    assert "customer_qualification" not in h.pc.calls  # decided: not asked again


# --- subscriptions and licences ---------------------------------------------------------------


def _customer_with_subscriptions(h: Harness, name: str = "subs", n: int = 2) -> tuple[Any, list]:
    tenant = h.add_tenant(name)
    h.run()
    customer = h.customer_of(tenant.id)
    subs = [_sub(h, customer.id) for _ in range(n)]
    for s in subs:
        h.give(tenant.id, s, assigned=3)
    for s in subs:  # Partner Center has them; the platform does not yet
        h.subs.delete(h.subs.get(customer.id, s.id.lower()))
    return customer, subs


def test_subscriptions_found_in_partner_center_are_added_priced_at_todays_catalog(
    h: Harness,
) -> None:
    customer, subs = _customer_with_subscriptions(h)
    h.clock.advance(hours=1)
    run = h.run(SyncTrigger.MANUAL)
    found = list(h.subs.iterate(customer.id))
    assert {s.id for s in found} == {s.id for s in subs}
    for s in found:
        assert s.origin is SubscriptionOrigin.SYNCED
        assert s.priced is not None and s.priced.quantity == 10
        assert s.assigned_licences == 6  # per SKU: both subscriptions are of the same one
    assert run.counts.subscriptions_added == 2
    assert run.counts.customers_refreshed == 1


def test_a_subscription_whose_offer_is_not_in_the_catalog_gets_no_price_and_a_note(
    h: Harness,
) -> None:
    tenant = h.add_tenant("odd")
    h.run()
    customer = h.customer_of(tenant.id)
    odd = _sub(h, customer.id, catalog_item_id="CFQ7TTC0XXXX:0001:0001")
    h.give(tenant.id, odd)
    h.subs.delete(h.subs.get(customer.id, odd.id.lower()))
    run = h.run(SyncTrigger.MANUAL)
    record = h.subs.get(customer.id, odd.id.lower())
    assert record.priced is None
    assert record.note and "CFQ7TTC0XXXX:0001:0001" in record.note
    assert run.status is SyncStatus.SUCCEEDED and run.errors_total == 0


def test_known_subscriptions_take_partner_centers_facts_and_ended_ones_are_counted(
    h: Harness,
) -> None:
    customer, subs = _customer_with_subscriptions(h, n=3)
    h.run(SyncTrigger.MANUAL)
    fake = h.pc.tenant(customer.tenant_id)
    fake.subscriptions[subs[0].id] = replace(fake.subscriptions[subs[0].id], quantity=12)
    fake.subscriptions[subs[1].id] = replace(fake.subscriptions[subs[1].id], status="expired")
    fake.assigned[subs[2].id] = 7
    h.clock.advance(hours=1)
    run = h.run(SyncTrigger.MANUAL)
    assert h.subs.get(customer.id, subs[0].id.lower()).quantity == 12
    assert h.subs.get(customer.id, subs[1].id.lower()).status == "Expired"
    # Licences are per SKU (the three share one): 3 + 7 assigned on the two still active.
    assert h.subs.get(customer.id, subs[2].id.lower()).assigned_licences == 10
    c = run.counts
    assert (c.subscriptions_updated, c.subscriptions_ended, c.licences_updated) == (1, 1, 3)
    assert c.records_written == 3


def test_a_subscription_with_a_change_in_flight_keeps_it(h: Harness) -> None:
    customer, subs = _customer_with_subscriptions(h, n=1)
    h.run(SyncTrigger.MANUAL)
    record = h.subs.get(customer.id, subs[0].id.lower())
    record.begin_change(
        PendingChange(
            order_id="01JCXORD000000000000000000",
            summary="quantity 10 → 12",
            requested_at=h.clock.now(),
            requested_by="owner@demo.example",
        )
    )
    h.subs.update(record)
    fake = h.pc.tenant(customer.tenant_id)
    fake.subscriptions[subs[0].id] = replace(fake.subscriptions[subs[0].id], auto_renew=False)
    h.run(SyncTrigger.MANUAL)
    after = h.subs.get(customer.id, subs[0].id.lower())
    assert after.auto_renew is False
    assert after.pending_change is not None and after.changing


def test_a_change_through_the_api_during_the_write_is_read_again_and_done_once_more(
    h: Harness,
) -> None:
    customer, subs = _customer_with_subscriptions(h, n=1)
    h.run(SyncTrigger.MANUAL)
    fake = h.pc.tenant(customer.tenant_id)
    fake.subscriptions[subs[0].id] = replace(fake.subscriptions[subs[0].id], quantity=15)
    inner_save = h.subs.save_all
    raced: list[bool] = []

    def racing_save_all(partition: str, **kw: Any) -> Any:
        if not raced:  # a person changes the record between the sync's read and its write
            raced.append(True)
            other = h.subs.get(customer.id, subs[0].id.lower())
            other.auto_renew = False
            h.subs.update(other)
        return inner_save(partition, **kw)

    h.subs.save_all = racing_save_all  # type: ignore[method-assign]
    run = h.run(SyncTrigger.MANUAL)
    after = h.subs.get(customer.id, subs[0].id.lower())
    assert after.quantity == 15  # the sync's change, redone on the record as it now is
    assert run.errors_total == 0 and run.counts.subscriptions_updated == 1


def test_a_customer_whose_reads_fail_is_an_error_line_and_the_chunk_goes_on(h: Harness) -> None:
    bad, good = h.add_tenant("bad"), h.add_tenant("good")
    h.run()
    h.pc.fail_tenants[bad.id] = UpstreamUnavailable("Partner Center is busy")
    _sub_for = _sub(h, h.customer_of(good.id).id)
    h.give(good.id, _sub_for)
    run = h.run(SyncTrigger.MANUAL)
    assert run.status is SyncStatus.SUCCEEDED
    assert run.errors_total == 1
    assert run.errors[0].customer_id == h.customer_of(bad.id).id
    assert run.errors[0].customer_name == "Bad s.r.o."
    assert run.counts.customers_refreshed == 1


# --- delta runs -------------------------------------------------------------------------------


def test_a_delta_run_with_nothing_changed_writes_nothing_and_sends_no_email(h: Harness) -> None:
    h.book.policy.licence_max_age_days = 1  # every customer's licences are read each night
    for i in range(5):
        h.add_tenant(f"quiet{i}")
    h.run()
    for c in h.c.customers.iterate("demo"):
        s = _sub(h, c.id)
        h.give(c.tenant_id, s, assigned=2)
    h.run(SyncTrigger.MANUAL)
    emails = len(_emails(h))
    before = h.versions()
    h.clock.advance(days=1)
    run = h.run()
    assert run.kind.value == "Delta" and run.status is SyncStatus.SUCCEEDED
    assert run.counts.records_written == 0
    assert h.versions() == before
    assert len(_emails(h)) == emails
    assert run.counts.customers_refreshed > 0  # the licence share was read, and matched
    h.clock.advance(hours=1)
    again = h.run(SyncTrigger.MANUAL)  # Sync now reads everything: still nothing to write
    assert again.kind.value == "Full" and again.counts.customers_refreshed == 5
    assert again.counts.records_written == 0
    assert h.versions() == before


def test_a_delta_run_refreshes_the_customers_the_audit_names_and_the_new_ones(
    h: Harness,
) -> None:
    named, quiet = h.add_tenant("named"), h.add_tenant("quiet")
    h.run()
    for t in (named, quiet):
        s = _sub(h, h.customer_of(t.id).id)
        h.give(t.id, s)
    h.run(SyncTrigger.MANUAL)
    h.clock.advance(hours=2)
    h.pc.audit.append(
        AuditEvent(
            id="a1",
            at=h.clock.now(),
            customer_tenant_id=named.id,
            resource_type="subscription",
            operation="update_subscription",
        )
    )
    fresh = h.add_tenant("fresh")
    h.pc.calls.clear()
    h.clock.advance(hours=1)
    run = h.run()
    assert run.kind.value == "Delta"
    refreshed = h.pc.calls.count("subscription_facts")
    assert refreshed == 2  # the named one and the new one, not the quiet one
    assert run.counts.customers_added == 1
    assert h.customer_of(fresh.id).status is CustomerStatus.ACTIVE


def test_a_delta_run_refreshes_a_customer_whose_commitment_ended_since_the_last_run(
    h: Harness,
) -> None:
    tenant = h.add_tenant("renewing")
    h.run()
    customer = h.customer_of(tenant.id)
    s = _sub(h, customer.id, commitment_end_date=h.clock.now() + timedelta(hours=5))
    h.give(tenant.id, s)
    h.run(SyncTrigger.MANUAL)
    fake = h.pc.tenant(tenant.id)
    fake.subscriptions[s.id] = replace(
        fake.subscriptions[s.id], commitment_end_date=h.clock.now() + timedelta(days=365)
    )
    h.clock.advance(hours=12)
    h.run()
    after = h.subs.get(customer.id, s.id.lower())
    assert after.commitment_end_date == h.clock.now() - timedelta(hours=12) + timedelta(days=365)


def test_a_subscription_that_expires_the_night_after_its_commitment_end_date_is_read_then(
    h: Harness,
) -> None:
    # commitmentEndDate is inclusive: Microsoft expires (or renews) it from 00:00 UTC the next
    # day, taking up to 24 h, with no audit record. The night of the end date finds it still
    # active; the run of the night after must read it again.
    tenant = h.add_tenant("lapsing")
    h.run()
    customer = h.customer_of(tenant.id)
    end = (h.clock.now() + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    s = _sub(h, customer.id, commitment_end_date=end, auto_renew=False)
    h.give(tenant.id, s)
    h.run(SyncTrigger.MANUAL)
    h.clock.advance(seconds=(end - h.clock.now()).total_seconds() + 3600)
    last_day = h.run()
    assert last_day.kind.value == "Delta" and last_day.counts.subscriptions_ended == 0
    fake = h.pc.tenant(tenant.id)
    fake.subscriptions[s.id] = replace(fake.subscriptions[s.id], status="expired")
    h.clock.advance(days=1)

    run = h.run()

    assert run.kind.value == "Delta"
    assert h.subs.get(customer.id, s.id.lower()).status.lower() == "expired"
    assert run.counts.subscriptions_ended == 1


def test_a_nightly_run_after_more_days_than_partner_center_keeps_audit_records_is_full(
    h: Harness,
) -> None:
    h.add_tenant("old")
    h.run()
    h.clock.advance(days=95)
    h.pc.calls.clear()
    run = h.run()
    assert run.kind.value == "Full" and run.audit_since is None
    assert "audit_events" not in h.pc.calls


def test_licence_counts_are_read_for_a_rotating_share_so_none_is_older_than_the_setting(
    h: Harness,
) -> None:
    for i in range(14):
        h.add_tenant(f"lic{i}")
    h.run()
    seen: set[str] = set()
    for _ in range(7):
        h.clock.advance(days=1)
        run = h.run()
        chunks = list(h.chunks.iterate(run.id))
        share = {cc.customer_id for ch in chunks for cc in ch.customers if cc.licences_only}
        assert len(share) < 14
        seen |= share
    assert len(seen) == 14


# --- resuming, poison, finishing --------------------------------------------------------------


def _world_for_crashes(h: Harness) -> None:
    for i in range(5):
        h.add_tenant(f"crash{i}")
    h.run()
    for c in h.c.customers.iterate("demo"):
        for _ in range(2):
            s = _sub(h, c.id)
            h.give(c.tenant_id, s, assigned=1)
            h.subs.delete(h.subs.get(c.id, s.id.lower()))
    h.add_tenant("crash-new")


def _crash_at(step: str, nth: int) -> Any:
    seen = [0]

    def hook(done: str) -> None:
        if done == step:
            seen[0] += 1
            if seen[0] == nth:
                raise Crash(done)

    return hook


@pytest.mark.parametrize(
    ("step", "nth"),
    [("customers", 1), ("checkpoint", 1), ("checkpoint", 4), ("chunk-writes", 2)],
)
def test_a_run_killed_at_a_step_boundary_ends_like_an_uninterrupted_one(
    step: str, nth: int
) -> None:
    results = []
    for crash in (False, True):
        h = make_harness()
        _world_for_crashes(h)
        if crash:
            h.book.after_step = _crash_at(step, nth)
        started = h.start(SyncTrigger.MANUAL)
        with contextlib.suppress(Crash):  # the host died; the message comes back
            h.pump()
        if crash:
            h.queue.clear()
            h.runs.sent.clear()
            run = h.runs.get("demo", sync_row_key(started.id))
            body = SyncMessage(reseller="demo", run_id=run.id).body()
            pending = [
                {**body, "chunk": c.number}
                for c in h.chunks.iterate(run.id)
                if c.status is ChunkStatus.PENDING and run.chunks_total is not None
            ]
            h.queue.extend((b, 2) for b in (pending or [body]))
            h.pump()
        run = h.runs.get("demo", sync_row_key(started.id))
        results.append(
            (run.status, run.counts.model_dump(exclude={"partner_center_calls"}), h.snapshot())
        )
    assert results[0][0] is SyncStatus.SUCCEEDED
    assert results[1][1] == results[0][1]
    assert results[1][2] == results[0][2]


def test_a_chunk_that_fails_for_good_fails_the_run_naming_it_and_keeps_the_others_work(
    h: Harness,
) -> None:
    tenants = [h.add_tenant(f"p{i}") for i in range(4)]
    h.run()
    for t in tenants:
        s = _sub(h, h.customer_of(t.id).id)
        h.give(t.id, s)
        h.subs.delete(h.subs.get(h.customer_of(t.id).id, s.id.lower()))
    inner = h.book.chunks.update
    poisoned = sorted(h.customer_of(t.id).id for t in tenants)[:2]  # chunk 0's customers

    def broken_update(chunk: SyncChunk, **kw: Any) -> SyncChunk:
        pending = chunk.status is ChunkStatus.PENDING
        if pending and chunk.number == 0 and chunk.customers[0].customer_id in poisoned:
            raise OSError("storage refused the checkpoint")
        return inner(chunk, **kw)

    h.book.chunks.update = broken_update  # type: ignore[method-assign]
    run = h.run(SyncTrigger.MANUAL)
    assert run.status is SyncStatus.FAILED
    assert run.failure_reason is not None and "chunk 1 of 2 failed" in run.failure_reason
    assert "gave up after 5 tries" in run.failure_reason
    assert run.chunks_failed == 1 and run.chunks_done == 1
    kept = [t for t in tenants if h.customer_of(t.id).id not in poisoned]
    for t in kept:
        assert len(list(h.subs.iterate(h.customer_of(t.id).id))) == 1
    assert h.runs.claim_owner("demo", runs.ACTIVE) is None


def test_two_chunks_ending_together_finish_the_run_once_with_every_count(h: Harness) -> None:
    for i in range(4):
        h.add_tenant(f"tw{i}")
    started = h.start()
    # The customer phase only: chunks written, none processed yet.
    h.queue.extend((dict(m.body), 1) for m in h.runs.sent)
    h.runs.sent.clear()
    body, _ = h.queue.pop(0)
    sync.handle(h.book, h.pc, SyncMessage.model_validate(body))
    run = h.runs.get("demo", sync_row_key(started.id))
    assert run.chunks_total == 2
    for chunk in h.chunks.iterate(run.id):
        chunk.status = ChunkStatus.DONE
        chunk.position = len(chunk.customers)
        chunk.counts.customers_refreshed = len(chunk.customers)
        h.chunks.update(chunk)
    inner = h.runs.update
    interleaved: list[bool] = []

    def update_racing(item: SyncRun, **kw: Any) -> SyncRun:
        if not interleaved:  # the other chunk's settle runs between this one's read and write
            interleaved.append(True)
            settle(h.book, "demo", run.id)
        return inner(item, **kw)

    h.runs.update = update_racing  # type: ignore[method-assign]
    settle(h.book, "demo", run.id)
    h.runs.update = inner  # type: ignore[method-assign]
    settle(h.book, "demo", run.id)  # a redelivered message of a chunk: nothing more
    done = h.runs.get("demo", sync_row_key(run.id))
    assert done.status is SyncStatus.SUCCEEDED
    assert done.counts.customers_refreshed == 4
    assert done.counts.customers_added == 4
    assert len(_emails(h)) == 1


# --- counts and the e-mail --------------------------------------------------------------------


def test_partner_center_calls_are_counted_into_the_run(h: Harness) -> None:
    for i in range(3):
        h.add_tenant(f"calls{i}")
    h.pc.calls.clear()
    run = h.run()
    assert run.counts.partner_center_calls == len(h.pc.calls) > 0


def test_the_reseller_is_told_once_of_new_customers_with_their_names(h: Harness) -> None:
    for i in range(23):
        h.add_tenant(f"n{i:02d}")
    run = h.run()
    emails = _emails(h)
    assert len(emails) == 1
    text = emails[0].email.text
    assert "23" in emails[0].email.subject
    assert text.count("\n- ") == 20 and "and 3 more" in text
    assert run.counts.customers_added == 23
    h.clock.advance(days=1)
    h.run()
    assert len(_emails(h)) == 1  # nothing new: no e-mail


def test_no_email_of_new_customers_when_the_reseller_switched_the_event_off(h: Harness) -> None:
    reseller = h.c.resellers.get("reseller", "demo")
    reseller.settings.notifications.events[NotificationEvent.CUSTOMER_PROVISIONED] = False
    h.c.resellers.update(reseller)
    h.add_tenant("silent")
    run = h.run()
    assert run.counts.customers_added == 1
    assert _emails(h) == []


# --- the timer and the watchdog ---------------------------------------------------------------


def test_the_nightly_timer_queues_one_run_per_reseller_with_a_tenant_id(h: Harness) -> None:
    started = sync.start_nightly(h.book)
    assert sorted(r.reseller for r in started) == ["demo", "other"]
    assert all(r.trigger is SyncTrigger.NIGHTLY for r in started)
    assert sync.start_nightly(h.book) == []  # while they run, none more


def test_a_run_without_progress_is_resent_once_then_failed(h: Harness) -> None:
    h.add_tenant("stuck")
    started = h.start()
    h.runs.sent.clear()  # the message was lost
    source = sync.StaleRuns(h.book)
    h.clock.advance(minutes=31)
    report = watch([source], h.clock.now())
    assert [i.id for i in report.nudged] == [started.id]
    assert [m.body for m in h.runs.sent] == [{"reseller": "demo", "runId": started.id}]
    h.runs.sent.clear()
    h.clock.advance(minutes=31)
    report = watch([source], h.clock.now())
    assert [i.id for i in report.failed] == [started.id]
    failed = h.runs.get("demo", sync_row_key(started.id))
    assert failed.status is SyncStatus.FAILED and failed.failure_reason
    assert h.runs.claim_owner("demo", runs.ACTIVE) is None


# --- wiring -----------------------------------------------------------------------------------


def test_the_sync_crash_knob_is_refused_in_production() -> None:
    from pydantic import ValidationError

    from shared.config import Settings

    base = {"AzureWebJobsStorage__accountName": "acct"}
    assert Settings(**base, SYNC_STEP_CRASH_AFTER="checkpoint", APP_ENVIRONMENT="test")
    with pytest.raises(ValidationError, match="SYNC_STEP_CRASH_AFTER"):
        Settings(**base, SYNC_STEP_CRASH_AFTER="checkpoint", APP_ENVIRONMENT="production")


def test_the_app_registers_the_sync_timer_and_queue_functions() -> None:
    from tests.app_index import triggers

    found = triggers()
    assert found["timer_nightly_sync"]["schedule"] == "%SYNC_SCHEDULE%"
    assert found["queue_sync_reseller"]["queueName"] == "sync-reseller"


def test_the_container_wires_the_sync_book_and_the_watchdog_watches_runs(h: Harness) -> None:
    c = h.c
    c.__dict__.update(sync_runs=h.runs, sync_chunks=h.chunks)
    book = c.sync_book
    assert book.policy.chunk_size == 250 and book.policy.licence_max_age_days == 7
    assert any(isinstance(s, sync.StaleRuns) for s in c.transient_records())


def test_a_tenant_listed_without_its_billing_profile_leaves_our_address_and_contact(
    h: Harness,
) -> None:
    tenant = h.add_tenant("bare")
    h.run()
    h.pc.base.fallback.tenants[tenant.id] = replace(tenant, address=Address(), contact=Contact())
    h.clock.advance(days=1)
    run = h.run()
    after = h.customer_of(tenant.id)
    assert after.address == tenant.address and after.contact == tenant.contact
    assert run.counts.customers_updated == 0


def test_a_chunk_of_the_largest_size_fits_table_storages_64_kib_property() -> None:
    from shared.adapters.tables.codec import EntityCodec
    from shared.domain.sync import ChunkCustomer

    customers = [
        ChunkCustomer(
            customer_id="01JCXSTA00000000000000000A",
            tenant_id="3f2c6a1e-8d4b-4c1a-9b7e-2a5d0c9e4f10",
            licences_only=i % 2 == 0,
            new=i % 3 == 0,
        )
        for i in range(400)  # SYNC_CHUNK_SIZE's upper bound
    ]
    chunk = SyncChunk(run_id="r", reseller="demo", number=0, customers=customers)
    codec = EntityCodec(SyncChunk)
    stored = codec.to_properties(chunk)["Customers"]
    assert len(stored.encode("utf-16-le")) < 64 * 1024
    entity = {**codec.to_properties(chunk), "PartitionKey": "r", "RowKey": "000000"}
    assert codec.from_entity(entity).customers == customers


def test_a_running_run_whose_chunk_messages_were_lost_is_resumed_by_the_watchdog(
    h: Harness,
) -> None:
    for i in range(3):
        h.add_tenant(f"lost{i}")
    started = h.start()
    body = h.runs.sent.pop(0).body
    sync.handle(h.book, h.pc, SyncMessage.model_validate(body))  # the customer phase
    h.runs.sent.clear()  # its chunk messages never arrive
    h.clock.advance(minutes=31)
    report = watch([sync.StaleRuns(h.book)], h.clock.now())
    assert [i.id for i in report.nudged] == [started.id]
    assert sorted(m.body["chunk"] for m in h.runs.sent) == [0, 1]
    h.pump()
    run = h.runs.get("demo", sync_row_key(started.id))
    assert run.status is SyncStatus.SUCCEEDED and run.counts.customers_refreshed == 3


def test_a_chunk_of_new_customers_prices_their_subscriptions_without_a_read_per_customer(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder, _ = _customer_with_subscriptions(h, "holder", n=0)
    tenants = [h.add_tenant(f"new{n}") for n in range(6)]
    for t in tenants:  # Partner Center holds a subscription of each new tenant
        sub = _sub(h, holder.id)
        h.give(t.id, sub, assigned=1)
        h.subs.delete(h.subs.get(holder.id, sub.id.lower()))
    h.clock.advance(hours=1)
    reads: list[str] = []
    customers = h.c.customers
    point_read = customers.find
    monkeypatch.setattr(customers, "find", lambda p, r: reads.append(r) or point_read(p, r))
    run = h.run(SyncTrigger.MANUAL)
    assert run.counts.subscriptions_added == 6
    for t in tenants:
        (sub,) = h.subs.iterate(h.customer_of(t.id).id)
        assert sub.priced is not None  # priced for its customer, read with the chunk's others
    assert reads == []

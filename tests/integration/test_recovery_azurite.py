"""Recovery against Azurite: claim rows under a real race, retention, the watchdog's scan."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from shared import bootstrap
from shared.adapters.tables.outbox_index import INDEX_TABLE
from shared.adapters.tables.repository import OutboxSink, TableRepository
from shared.bootstrap import Container
from shared.domain.claims import Claim
from shared.domain.customers import Customer, CustomerUpdate
from shared.domain.failures import FailureKind
from shared.domain.idempotency import IdempotencyRecord, IdempotencyStatus
from shared.domain.identity import Invitation, Role
from shared.domain.notifications import Email, Notification, NotificationStatus
from shared.domain.orders import HistoryEntry, Order, OrderStatus, order_row_key
from shared.domain.outbox import OutboxMessage, Queue
from shared.services import customers, housekeeping, users
from shared.services.customers import CustomerBook
from shared.services.orders import InFlightOrders
from tests.customer_bodies import new_customer_body
from tests.fakes import install_customers, onboard
from tests.functions.helpers import call, json_of
from tests.functions.world import World, build_world
from tests.unit.test_customers import OWNER

pytestmark = pytest.mark.integration


@pytest.fixture
def world(container: Container) -> Iterator[tuple[World, Container]]:
    """The HTTP test world, with customers and idempotency keys stored in Azurite."""
    w = build_world()
    install_customers(w.container)
    c = w.container
    c.__dict__.update(customers=container.customers, idempotency=container.idempotency)
    c.__dict__["customer_book"] = CustomerBook(
        container.customers, c.resellers, c.clock, None, c.notifications
    )
    bootstrap.use(c)
    yield w, container
    bootstrap.use(None)


def test_two_concurrent_creates_for_one_domain_end_as_one_customer_and_one_409(world):
    w, real = world
    pc = w.container.partner_center
    both_checked = threading.Barrier(2, timeout=10)
    free = pc.is_domain_available

    def check_together(domain: str) -> bool:
        answer = free(domain)
        both_checked.wait()  # both pass the checks before either writes
        return answer

    pc.is_domain_available = check_together

    def create(key: str) -> Any:
        return call(
            "http_create_customer",
            "POST",
            "resellers/demo/customers",
            route={"r": "demo"},
            token=w.token("Sales"),
            body=new_customer_body("racefirm"),
            headers={"Idempotency-Key": key},
        )

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(create, ["key-1", "key-2"]))

    assert sorted(a.status_code for a in answers) == [202, 409]
    [won] = [json_of(a) for a in answers if a.status_code == 202]
    [lost] = [a for a in answers if a.status_code == 409]
    assert lost.mimetype == "application/problem+json"
    problem = json_of(lost)
    assert problem["errors"][0]["field"] == "tenantName"
    assert "racefirm.onmicrosoft.com is already taken" in problem["errors"][0]["message"]
    stored = list(real.customers.iterate("demo"))
    assert [c.id for c in stored] == [won["id"]]
    claim = Claim("domain", "racefirm.onmicrosoft.com")
    assert real.customers.claim_owner("demo", claim) == won["id"]


def test_claim_rows_stay_out_of_lists_and_move_with_the_tenant_name(container):
    repo = container.customers
    book = CustomerBook(repo, container.resellers, container.clock)
    first = repo.add(
        Customer(reseller="demo", name="A", domain="a.onmicrosoft.com"),
        claims={Claim("domain", "a.onmicrosoft.com")},
    )
    page = repo.list("demo")
    assert [c.id for c in page.items] == [first.id]  # the claim row is no record

    first.status = customers.CustomerStatus.FAILED
    first.failure_kind = FailureKind.REFUSED  # Partner Center refused the name
    failed = repo.update(first)
    onboard(container.resellers, container.clock, "demo")
    renamed = customers.update(
        book, OWNER, "demo", failed.id, failed.etag or "", CustomerUpdate(tenant_name="b")
    )
    assert renamed.domain == "b.onmicrosoft.com"
    assert repo.claim_owner("demo", Claim("domain", "b.onmicrosoft.com")) == first.id
    assert repo.claim_owner("demo", Claim("domain", "a.onmicrosoft.com")) is None
    # A second record cannot take the new name; the old one is free.
    with pytest.raises(customers.ClaimTaken):
        repo.add(
            Customer(reseller="demo", name="B", domain="b.onmicrosoft.com"),
            claims={Claim("domain", "b.onmicrosoft.com")},
        )
    repo.add(
        Customer(reseller="demo", name="C", domain="a.onmicrosoft.com"),
        claims={Claim("domain", "a.onmicrosoft.com")},
    )
    assert len(repo.list("demo").items) == 2


def test_retention_deletes_what_is_past_its_days_and_keeps_the_rest(container):
    now = container.clock.now()
    old, recent = now - timedelta(days=40), now - timedelta(days=5)
    for key, expires in (("old", old), ("recent", recent), ("live", now + timedelta(days=1))):
        container.idempotency.add(
            IdempotencyRecord(
                scope="demo",
                key_hash=key,
                request_hash="h",
                status=IdempotencyStatus.COMPLETED,
                created_at=expires - timedelta(days=1),
                locked_until=expires,
                expires_at=expires,
            )
        )

    def invitation(name: str, expires: Any, accepted: Any = None) -> Invitation:
        return Invitation(
            reseller="demo",
            token_hash=name,
            user_id="u",
            email=f"{name}@demo.example",
            role=Role.SALES,
            invited_by="owner",
            created_at=expires - timedelta(days=7),
            expires_at=expires,
            accepted_at=accepted,
        )

    for inv in (
        invitation("expiredlong", old),
        invitation("acceptedlong", now + timedelta(days=1), accepted=old),
        invitation("acceptedrecently", now + timedelta(days=1), accepted=recent),
        invitation("pending", now + timedelta(days=3)),
    ):
        container.invitations.add(inv)

    email = Email(to=["a@demo.example"], subject="s", text="t")
    for nid, status, sent in (
        ("sentlong", NotificationStatus.SENT, old),
        ("sentrecently", NotificationStatus.SENT, recent),
        ("pendinglong", NotificationStatus.PENDING, None),
        ("failedlong", NotificationStatus.FAILED, None),
    ):
        container.notifications.add(
            Notification(
                scope="demo", id=nid, email=email, status=status, sent_at=sent, created_at=old
            )
        )

    h = container.housekeeping
    purged = housekeeping.purge(h)
    assert (purged.idempotency, purged.invitations, purged.notifications) == (1, 2, 1)
    assert sorted(r.key_hash for r in container.idempotency.iterate("demo")) == ["live", "recent"]
    assert sorted(i.token_hash for i in container.invitations.iterate("demo")) == [
        "acceptedrecently",
        "pending",
    ]
    assert sorted(n.id for n in container.notifications.iterate("demo")) == [
        "failedlong",
        "pendinglong",
        "sentrecently",
    ]
    assert housekeeping.purge(h) == housekeeping.Purged()  # nothing more on the next pass


def test_records_from_before_claim_rows_get_them_from_the_claims_migration_once(container):
    onboard(container.resellers, container.clock, "demo")
    old = container.customers.add(
        Customer(reseller="demo", name="Old", domain="old.onmicrosoft.com", tenant_id="t-1")
    )
    user = users.ensure_user(container.directory, "demo", "old@demo.example", Role.SALES)
    container.users.table.delete_entity("demo", Claim("email", user.email).row_key)

    assert "claim-rows" in container.migrate()
    assert container.migrations_done.get("platform", "claim-rows").changed == 2
    assert container.customers.claim_owner("demo", Claim("domain", old.domain)) == old.id
    assert container.customers.claim_owner("demo", Claim("tenant", "t-1")) == old.id
    assert container.users.claim_owner("demo", Claim("email", "old@demo.example")) == user.id
    assert container.migrate() == []  # remembered: a later pass does not scan again


def test_outbox_rows_from_before_the_partition_index_are_marked_by_a_migration_then_swept(
    container,
):
    # A writer that committed a customer and its message, then died before sending it, in a
    # version whose sweeper scanned whole tables: no partition marker exists for that row.
    writer = TableRepository(
        container.store, "Customers", Customer, lambda c: (c.reseller, c.id), OutboxSink()
    )
    writer.add(
        Customer(reseller="demo", name="Old", domain="older.onmicrosoft.com"),
        messages=[OutboxMessage(queue=Queue.NOTIFICATIONS, body={"scope": "demo", "id": "n1"})],
    )
    index = container.store.table(INDEX_TABLE)
    for marker in list(index.list_entities()):
        index.delete_entity(marker["PartitionKey"], marker["RowKey"])
    later = container.clock.now() + timedelta(hours=1)
    assert container.outbox.sweep(container.store, container.outbox_tables(), later) == 0

    assert "outbox-partition-markers" in container.migrate()

    assert container.outbox.sweep(container.store, container.outbox_tables(), later) == 1
    assert container.outbox.sweep(container.store, container.outbox_tables(), later) == 0


def test_the_watchdog_finds_orders_in_flight_across_resellers_by_status_only(container):
    now = container.clock.now()

    def order(reseller: str, status: OrderStatus) -> Order:
        return container.orders.add(
            Order(
                reseller=reseller,
                customer_id="C1",
                lines=[],
                currency="CZK",
                created_by="t@example.com",
                status=status,
                history=[HistoryEntry(status=status, at=now, by="t@example.com")],
            )
        )

    submitted = order("wd-one", OrderStatus.SUBMITTED)
    provisioning = order("wd-two", OrderStatus.PROVISIONING)
    for status in (OrderStatus.DRAFT, OrderStatus.COMPLETED, OrderStatus.FAILED):
        order("wd-one", status)
    source = InFlightOrders(container.order_book)
    found = {(i.partition, i.id, i.status) for i in source.in_flight()}
    assert {(o.reseller, o.id, o.status.value) for o in (submitted, provisioning)} <= found
    assert {i[2] for i in found} <= {"Submitted", "Provisioning"}
    source.nudge(next(i for i in source.in_flight() if i.id == submitted.id))
    assert container.orders.get("wd-one", order_row_key(submitted.id)).nudged_at is not None

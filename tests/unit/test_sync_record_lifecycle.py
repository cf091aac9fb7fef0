"""The sync and the lifecycle of what it mirrors, with in-memory fakes: only this reseller's
subscriptions (its MPN id is their reseller of record), records Partner Center no longer lists
(or lists as another reseller's) ended here, a re-associated customer refreshed in full, an
unpriced subscription priced once it can be, company data merged field by field."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from shared.domain.customers import Address, Contact, Tenant
from shared.domain.subscriptions import PendingChange
from shared.domain.sync import SyncStatus, SyncTrigger
from shared.services import customers
from tests.fakes import reseller_ids
from tests.unit.test_sync_engine import Harness, _customer_with_subscriptions, _sub, make_harness

DEMO_MPN = reseller_ids("demo")[1]
OTHER_MPN = reseller_ids("other")[1]


@pytest.fixture
def h() -> Harness:
    return make_harness()


def _facts(h: Harness, customer: Any, sub: Any) -> Any:
    return h.pc.tenant(customer.tenant_id).subscriptions[sub.id]


def _set_facts(h: Harness, customer: Any, sub: Any, **changes: Any) -> None:
    fake = h.pc.tenant(customer.tenant_id)
    fake.subscriptions[sub.id] = replace(fake.subscriptions[sub.id], **changes)


# --- 1: the reseller of record ----------------------------------------------------------------


def test_a_subscription_of_another_reseller_on_the_same_tenant_is_never_added(h: Harness):
    customer, subs = _customer_with_subscriptions(h, n=2)
    _set_facts(h, customer, subs[1], partner_id=OTHER_MPN)  # the tenant has two resellers
    h.clock.advance(hours=2)
    run = h.run(SyncTrigger.MANUAL)
    assert [s.id for s in h.subs.iterate(customer.id)] == [subs[0].id]
    assert run.status is SyncStatus.SUCCEEDED and run.errors_total == 0
    assert run.counts.subscriptions_added == 1


def test_a_subscription_that_moved_to_another_reseller_ends_here_with_a_note(h: Harness):
    customer, subs = _customer_with_subscriptions(h, n=2)
    h.clock.advance(hours=2)
    h.run(SyncTrigger.MANUAL)
    _set_facts(h, customer, subs[0], partner_id=OTHER_MPN)
    h.clock.advance(days=1)
    moved = h.run(SyncTrigger.MANUAL)
    record = h.subs.get(customer.id, subs[0].id.lower())
    assert record.status == "Deleted" and not record.live
    assert record.note and "moved to another reseller" in record.note
    assert (moved.counts.subscriptions_ended, moved.counts.subscriptions_updated) == (1, 0)
    assert h.subs.get(customer.id, subs[1].id.lower()).status == "Active"
    versions = h.versions()
    h.clock.advance(days=1)
    again = h.run(SyncTrigger.MANUAL)
    assert h.versions() == versions and again.counts.subscriptions_ended == 0


def test_a_subscription_that_moves_back_is_live_again_without_the_note(h: Harness):
    customer, subs = _customer_with_subscriptions(h, n=1)
    h.clock.advance(hours=2)
    h.run(SyncTrigger.MANUAL)
    _set_facts(h, customer, subs[0], partner_id=OTHER_MPN)
    h.run(SyncTrigger.MANUAL)
    _set_facts(h, customer, subs[0], partner_id=DEMO_MPN)
    h.run(SyncTrigger.MANUAL)
    record = h.subs.get(customer.id, subs[0].id.lower())
    assert record.status == "Active" and record.note is None


# --- 5: subscriptions Partner Center no longer lists ------------------------------------------


def test_a_subscription_partner_center_no_longer_lists_is_ended_once_and_counted(h: Harness):
    customer, subs = _customer_with_subscriptions(h, n=3)
    h.clock.advance(hours=2)
    h.run(SyncTrigger.MANUAL)
    fake = h.pc.tenant(customer.tenant_id)
    del fake.subscriptions[subs[0].id]
    del fake.subscriptions[subs[1].id]
    changing = h.subs.get(customer.id, subs[1].id.lower())
    changing.begin_change(
        PendingChange(
            order_id="01JCXORD000000000000000000",
            summary="quantity 10 → 12",
            requested_at=h.clock.now(),
            requested_by="owner@demo.example",
        )
    )
    h.subs.update(changing)
    h.clock.advance(days=1)
    run = h.run(SyncTrigger.MANUAL)
    gone = h.subs.get(customer.id, subs[0].id.lower())
    assert gone.status == "Deleted"
    assert gone.note and "no longer lists it" in gone.note
    # A change in flight is left to its order; one still listed is untouched.
    assert h.subs.get(customer.id, subs[1].id.lower()).status == "Active"
    assert h.subs.get(customer.id, subs[2].id.lower()).status == "Active"
    assert run.counts.subscriptions_ended == 1


def test_a_subscription_recorded_moments_ago_is_not_ended_for_not_being_listed_yet(h: Harness):
    tenant = h.add_tenant("fresh")
    h.run()
    customer = h.customer_of(tenant.id)
    _sub(h, customer.id)  # an order placed here a moment ago; Partner Center lists it later
    run = h.run(SyncTrigger.MANUAL)
    [record] = list(h.subs.iterate(customer.id))
    assert record.status == "Active" and run.counts.subscriptions_ended == 0


def test_a_licence_only_refresh_never_ends_subscriptions(h: Harness):
    h.book.policy.licence_max_age_days = 1  # every customer's licences each night
    customer, subs = _customer_with_subscriptions(h, n=1)
    h.clock.advance(hours=2)
    h.run(SyncTrigger.MANUAL)
    del h.pc.tenant(customer.tenant_id).subscriptions[subs[0].id]
    h.clock.advance(days=1)
    run = h.run()  # a delta: licences only for this customer (no audit record names it)
    assert run.kind.value == "Delta"
    assert h.subs.get(customer.id, subs[0].id.lower()).status == "Active"


# --- 6: a customer listed as ours again ---------------------------------------------------------


def test_a_reassociated_customer_is_refreshed_in_full_by_the_next_delta(h: Harness):
    h.book.policy.licence_max_age_days = 30
    customer, subs = _customer_with_subscriptions(h, n=1)
    h.clock.advance(hours=2)
    h.run(SyncTrigger.MANUAL)
    tenant = h.pc.base.fallback.tenants.pop(customer.tenant_id)
    h.clock.advance(days=1)
    h.run()
    assert h.customer_of(customer.tenant_id).unassociated_since is not None
    # Changed while the tenant was not this reseller's: no audit record of ours names it.
    _set_facts(h, customer, subs[0], quantity=17)
    h.pc.base.fallback.tenants[customer.tenant_id] = tenant
    h.clock.advance(days=1)
    back = h.run()
    assert back.kind.value == "Delta"
    assert h.customer_of(customer.tenant_id).unassociated_since is None
    assert h.subs.get(customer.id, subs[0].id.lower()).quantity == 17
    assert back.counts.customers_updated == 1 and back.counts.subscriptions_updated == 1


# --- 10: unpriced subscriptions -----------------------------------------------------------------


def test_an_unpriced_subscription_is_priced_by_the_next_run_and_its_note_goes(h: Harness):
    customer, subs = _customer_with_subscriptions(h, n=1)
    h.clock.advance(hours=2)
    h.run(SyncTrigger.MANUAL)
    record = h.subs.get(customer.id, subs[0].id.lower())
    # As a run left it when the offer was not in the catalog yet (nothing in Partner Center
    # has changed since).
    record.priced, record.note = None, "No price: the offer X is not in the catalog"
    h.subs.update(record)
    run = h.run(SyncTrigger.MANUAL)
    after = h.subs.get(customer.id, subs[0].id.lower())
    assert after.priced is not None and after.note is None
    assert run.counts.subscriptions_updated == 1


def test_a_subscription_still_unpriceable_is_not_written_again(h: Harness):
    tenant = h.add_tenant("odd")
    h.run()
    customer = h.customer_of(tenant.id)
    odd = _sub(h, customer.id, catalog_item_id="CFQ7TTC0XXXX:0001:0001")
    h.give(tenant.id, odd)
    h.subs.delete(h.subs.get(customer.id, odd.id.lower()))
    h.run(SyncTrigger.MANUAL)
    versions = h.versions()
    run = h.run(SyncTrigger.MANUAL)
    assert h.versions() == versions and run.counts.records_written == 0


# --- 11: company data, field by field -----------------------------------------------------------


def _customer(h: Harness) -> Any:
    tenant = h.add_tenant(
        "acme",
        address=Address(country="CZ", street="Hlavní 1", city="Praha", postcode="110 00"),
        contact=Contact(first_name="Eva", last_name="Malá", email="eva@acme.example"),
    )
    h.run()
    return tenant, h.customer_of(tenant.id)


def test_a_tenant_without_a_company_name_never_renames_the_customer_to_its_domain(h: Harness):
    tenant, customer = _customer(h)
    nameless = replace(tenant, company_name=None, language="", culture="  ")
    assert customers.take_company_data(customer, nameless) is False
    assert customer.name == "Acme s.r.o."


def test_a_partly_filled_address_or_contact_changes_only_the_fields_it_gives(h: Harness):
    _, customer = _customer(h)
    partial = Tenant(
        id=customer.tenant_id,
        domain=customer.domain,
        company_name="Acme s.r.o.",
        address=Address(city="Brno", street=""),
        contact=Contact(email="new@acme.example"),
    )
    assert customers.take_company_data(customer, partial) is True
    assert customer.address == Address(
        country="CZ", street="Hlavní 1", city="Brno", postcode="110 00"
    )
    assert customer.contact == Contact(first_name="Eva", last_name="Malá", email="new@acme.example")


def test_an_unchanged_tenant_changes_nothing_however_many_runs(h: Harness):
    tenant, customer = _customer(h)
    assert customers.take_company_data(customer, tenant) is False
    h.clock.advance(days=1)
    versions = h.versions()
    h.run(SyncTrigger.MANUAL)
    assert h.versions() == versions


def test_an_order_placed_in_partner_centers_ui_for_the_tenant_appears_as_its_subscription(
    h: Harness,
):
    customer, subs = _customer_with_subscriptions(h, n=1)
    placed = h.pc.tenant(customer.tenant_id).place_order_outside(
        customer.tenant_id, subs[0].catalog_item_id or "", 3
    )
    h.clock.advance(hours=2)
    h.run(SyncTrigger.MANUAL)
    sid = placed.lines[0].subscription_id
    assert sid is not None and h.subs.get(customer.id, sid.lower()).quantity == 3

"""Who a reseller is in Partner Center: two ids, checked at onboarding, matched exactly."""

from __future__ import annotations

import pytest

from shared.adapters.tables.codec import EntityCodec
from shared.domain.customers import CustomerImport, CustomerStatus, Tenant
from shared.domain.errors import NotFound, UpstreamRejected, UpstreamUnavailable, ValidationFailed
from shared.domain.identity import (
    Appearance,
    IndirectReseller,
    Principal,
    Reseller,
    ResellerIncomplete,
    ResellerSettings,
    Role,
    SignInKind,
)
from shared.services import customers, resellers
from shared.services.resellers import ResellerCreate, ResellerUpdate
from tests.catalog_fakes import InMemoryCatalogStore
from tests.customer_bodies import new_customer_body
from tests.fakes import FakeClock, FakeIndirectResellers, InMemoryRepository, reseller_ids
from tests.unit.test_customers import World

SHORT = "3f2c6a1e-8d4b-4c1a-9b7e-2a5d0c9e4f10"
# A partner id that begins with SHORT: Partner Center's `starts_with` filter returns its tenants
# when asked for SHORT's.
LONG = SHORT + "7"
OWNER = Principal(
    "u1", "demo", None, Role.ACCOUNT_MANAGER, "owner@demo.example", SignInKind.PLATFORM
)


def _reseller_with_tenant_id(w: World, slug: str, tenant_id: str) -> Reseller:
    stored = w.resellers.get("reseller", slug)
    stored.partner_center_tenant_id = tenant_id
    return w.resellers.update(stored)


def _tenant(w: World, partner_id: str, domain: str) -> Tenant:
    return w.pc.add_tenant(partner_id, domain, domain)


# --- exact matching ------------------------------------------------------------------------------


def test_import_by_domain_ignores_the_tenant_of_a_reseller_whose_id_starts_with_ours():
    w = World()
    _reseller_with_tenant_id(w, "demo", SHORT)
    _tenant(w, LONG, "theirs.onmicrosoft.com")
    mine = _tenant(w, SHORT.upper(), "mine.onmicrosoft.com")  # case does not matter
    with pytest.raises(NotFound):
        customers.import_existing(
            w.book, w.pc, OWNER, "demo", CustomerImport(domain="theirs.onmicrosoft.com")
        )
    imported = customers.import_existing(
        w.book, w.pc, OWNER, "demo", CustomerImport(domain="mine.onmicrosoft.com")
    )
    assert imported.tenant_id == mine.id


def test_reseller_tenants_yields_only_exact_matches():
    w = World()
    reseller = _reseller_with_tenant_id(w, "demo", SHORT)
    _tenant(w, LONG, "theirs.onmicrosoft.com")
    mine = _tenant(w, SHORT, "mine.onmicrosoft.com")
    # The fake filters as Partner Center does (starts_with): both come back from the port.
    assert len(list(w.pc.customer_tenants(indirect_reseller_id=SHORT))) == 2
    assert [t.id for t in customers.reseller_tenants(w.pc, reseller)] == [mine.id]


def test_import_by_tenant_id_refuses_a_tenant_of_a_reseller_whose_id_starts_with_ours():
    w = World()
    _reseller_with_tenant_id(w, "demo", SHORT)
    theirs = _tenant(w, LONG, "theirs.onmicrosoft.com")
    with pytest.raises(NotFound):
        customers.import_existing(w.book, w.pc, OWNER, "demo", CustomerImport(tenant_id=theirs.id))


def test_a_retried_create_does_not_adopt_the_tenant_of_a_reseller_whose_id_starts_with_ours():
    w = World()
    _reseller_with_tenant_id(w, "demo", SHORT)
    customer = customers.create(
        w.book,
        w.pc,
        OWNER,
        "demo",
        customers.CustomerCreate.model_validate(new_customer_body("alfanova")),
    )
    # Meanwhile another reseller (id LONG) got a tenant with the same domain.
    _tenant(w, LONG, "alfanova.onmicrosoft.com")
    with pytest.raises(UpstreamRejected):
        customers.provision(w.book, w.pc, w.mailer, w.message(customer))
    stored = w.repo.get("demo", customer.id)
    assert stored.status is CustomerStatus.PROVISIONING and stored.tenant_id is None
    assert w.notifications.rows == {}


# --- stored resellers of the one-id era ----------------------------------------------------------


def _entity(partner_center_id: str) -> dict[str, object]:
    """A Resellers row as the one-id version of the code wrote it."""
    reseller = Reseller(
        slug="old",
        name="Old s.r.o.",
        country="CZ",
        currency="CZK",
        settings=ResellerSettings(appearance=Appearance(display_name="Old")),
    )
    return {**EntityCodec(Reseller).to_properties(reseller), "PartnerCenterId": partner_center_id}


def test_a_stored_reseller_with_a_tenant_guid_loads_without_an_mpn_id_and_orders_are_refused():
    reseller = EntityCodec(Reseller).from_entity(_entity(SHORT.upper()))
    assert (reseller.partner_center_tenant_id, reseller.mpn_id) == (SHORT, None)
    assert reseller.require_tenant_id() == SHORT
    with pytest.raises(ResellerIncomplete, match=r"PATCH /api/resellers/old \(mpnId\)"):
        reseller.require_mpn_id()
    # Saved again, it has the new properties only.
    assert "PartnerCenterId" not in EntityCodec(Reseller).to_properties(reseller)


def test_a_stored_reseller_with_an_mpn_id_only_cannot_create_or_import_customers():
    w = World()
    legacy = EntityCodec(Reseller).from_entity(_entity("1234567"))
    assert (legacy.partner_center_tenant_id, legacy.mpn_id) == (None, "1234567")
    stored = w.resellers.get("reseller", "demo")
    stored.partner_center_tenant_id = None
    w.resellers.update(stored)
    _tenant(w, "12345678", "theirs.onmicrosoft.com")
    with pytest.raises(ResellerIncomplete, match="partnerCenterTenantId"):
        customers.import_existing(
            w.book, w.pc, OWNER, "demo", CustomerImport(domain="theirs.onmicrosoft.com")
        )
    with pytest.raises(ResellerIncomplete):
        customers.create(
            w.book,
            w.pc,
            OWNER,
            "demo",
            customers.CustomerCreate.model_validate(new_customer_body("alfanova")),
        )
    assert w.repo.rows == {}


# --- onboarding checks both ids with Partner Center ---------------------------------------------


def _command(slug: str = "acme", **overrides: str) -> ResellerCreate:
    tenant_id, mpn_id = reseller_ids(slug)
    values = {
        "slug": slug,
        "name": "Acme",
        "partnerCenterTenantId": tenant_id,
        "mpnId": mpn_id,
        "country": "CZ",
        "currency": "CZK",
        **overrides,
    }
    return ResellerCreate.model_validate(values)


@pytest.fixture
def repo() -> InMemoryRepository[Reseller]:
    return InMemoryRepository[Reseller](lambda r: ("reseller", r.slug))


def test_onboarding_stores_both_ids_partner_center_confirms(repo):
    reseller = resellers.onboard(repo, FakeClock(), _command(), FakeIndirectResellers())
    assert (reseller.partner_center_tenant_id, reseller.mpn_id) == reseller_ids("acme")


@pytest.mark.parametrize(
    ("known", "overrides", "field"),
    [
        ([], {}, "partnerCenterTenantId"),  # Partner Center does not know the reseller
        (None, {"mpnId": "7777777"}, "mpnId"),  # its MPN id is another
        ("inactive", {}, "partnerCenterTenantId"),
    ],
)
def test_onboarding_a_reseller_partner_center_does_not_know_is_400_naming_the_field(
    repo, known, overrides, field
):
    directory = FakeIndirectResellers(known if isinstance(known, list) else None)
    if known == "inactive":
        tenant_id, mpn_id = reseller_ids("acme")
        directory = FakeIndirectResellers(
            [IndirectReseller(tenant_id=tenant_id, name="Acme", mpn_id=mpn_id, active=False)]
        )
    with pytest.raises(ValidationFailed) as err:
        resellers.onboard(repo, FakeClock(), _command(**overrides), directory)
    assert [e.field for e in err.value.errors] == [field]
    assert repo.rows == {}


def test_onboarding_while_partner_center_is_down_stores_nothing(repo):
    directory = FakeIndirectResellers()
    directory.fail_with = UpstreamUnavailable("down", retry_after=5)
    with pytest.raises(UpstreamUnavailable):
        resellers.onboard(repo, FakeClock(), _command(), directory)
    assert repo.rows == {}


def test_patching_an_id_is_checked_with_the_other_and_a_name_change_asks_nobody(repo):
    clock = FakeClock()
    reseller = resellers.onboard(repo, clock, _command(), FakeIndirectResellers())
    down = FakeIndirectResellers()
    down.fail_with = UpstreamUnavailable("down")
    renamed = resellers.update(
        repo,
        clock,
        "acme",
        reseller.etag or "",
        ResellerUpdate(name="Acme 2"),
        InMemoryCatalogStore(),
        down,
    )
    with pytest.raises(ValidationFailed) as err:
        resellers.update(
            repo,
            clock,
            "acme",
            renamed.etag or "",
            ResellerUpdate(mpn_id="7777777"),
            InMemoryCatalogStore(),
            FakeIndirectResellers(),
        )
    assert [e.field for e in err.value.errors] == ["mpnId"]
    assert repo.get("reseller", "acme").mpn_id == reseller_ids("acme")[1]
    # A legacy reseller without an MPN id gets the right one.
    legacy = repo.get("reseller", "acme")
    legacy.mpn_id = None
    legacy = repo.update(legacy)
    fixed = resellers.update(
        repo,
        clock,
        "acme",
        legacy.etag or "",
        ResellerUpdate(mpn_id=reseller_ids("acme")[1]),
        InMemoryCatalogStore(),
        FakeIndirectResellers(),
    )
    assert fixed.mpn_id == reseller_ids("acme")[1]

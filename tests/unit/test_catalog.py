"""Catalog services on fakes: import, curation, public and customer views, the cache."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from localdev.partner_center_sim.catalog import PARTNER_COST_SHARE
from shared.domain.errors import (
    ConcurrencyConflict,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    UpstreamUnavailable,
    ValidationFailed,
)
from shared.domain.identity import Principal, Role, SignInKind
from shared.domain.money import Money
from shared.services import catalog_editing, catalog_views
from shared.services.catalog_editing import CatalogEntryPut
from shared.services.catalog_views import CustomerCatalogPublic, CustomerCatalogStaff
from tests.catalog_fakes import (
    ADDON,
    BOTH,
    COMMERCIAL_ONLY,
    EDU_ONLY,
    TEAMS,
    CatalogWorld,
    cost_fields,
    seeded_world,
)

STAFF = Principal("u1", "demo", None, Role.SALES, "s@demo.example", SignInKind.PLATFORM)
CUSTOMER = Principal("u2", "demo", "C1", Role.CUSTOMER_READER, "c@a.example", SignInKind.PLATFORM)


def names(page: object) -> set[str]:
    return {i.name for i in page.items}  # type: ignore[attr-defined]


# --- import ---------------------------------------------------------------------------------


def test_import_stores_products_with_skus_terms_segments_addons_and_prices():
    world = CatalogWorld()
    report = world.run_import()
    assert report.added == report.products == len(world.products.rows) > 30
    e3 = world.product(BOTH)
    sku = next(s for s in e3.skus if not s.is_trial)
    assert e3.segments == {"commercial", "education", "government", "nonprofit"}
    assert {(t.duration, t.billing_cycle) for t in sku.availability("commercial").terms} >= {
        ("P1M", "monthly"),
        ("P1Y", "annual"),
        ("P3Y", "triennial"),
    }
    assert any(s.is_trial for s in e3.skus)
    annual = sku.price("commercial", "P1Y", "monthly", "CZK")
    monthly = sku.price("commercial", "P1M", "monthly", "CZK")
    assert annual is not None and monthly is not None
    # The 20 % monthly-term premium comes from the price sheet itself.
    assert monthly.cost == (annual.cost * Decimal("1.2")).quantize(Decimal("0.01"))
    assert annual.erp is not None and annual.cost < annual.erp
    assert sku.price("commercial", "P1Y", "monthly", "EUR") is not None
    addon = world.product(ADDON)
    assert addon.is_addon and world.pid(TEAMS) in addon.base_product_ids
    assert addon.id in world.product(TEAMS).addon_product_ids


def test_reimport_of_an_unchanged_catalog_writes_nothing():
    world = CatalogWorld()
    first = world.run_import()
    writes, stamp = world.products.writes, world.stamps.rows[("market", "CZ")]
    again = world.run_import()
    assert again.unchanged == first.products and again.added == again.changed == 0
    assert world.products.writes == writes
    assert not again.stamp_changed
    assert world.stamps.rows[("market", "CZ")].etag == stamp.etag


def test_a_price_change_rewrites_only_that_product_and_moves_the_stamp():
    world = CatalogWorld()
    first = world.run_import()
    writes = world.products.writes
    world.pc.catalog.sku_by_slug(COMMERCIAL_ONLY).erp_month_eur = Decimal("5.00")
    report = world.run_import()
    assert report.changed == 1 and world.products.writes == writes + 1
    assert report.stamp_changed and report.import_id != first.import_id


def test_a_withdrawn_product_is_marked_not_deleted_and_comes_back():
    world = CatalogWorld()
    world.run_import()
    pid = world.pid(COMMERCIAL_ONLY)
    world.pc.withdrawn.add(pid)
    report = world.run_import()
    assert report.withdrawn == 1
    stored = world.product(COMMERCIAL_ONLY)
    assert stored.withdrawn and stored.withdrawn_at is not None
    world.pc.withdrawn.clear()
    back = world.run_import()
    assert back.restored == 1 and not world.product(COMMERCIAL_ONLY).withdrawn


def test_a_partner_center_failure_midway_writes_nothing():
    world = CatalogWorld()
    world.pc.fail_on = "list_availabilities"
    with pytest.raises(UpstreamUnavailable):
        world.run_import()
    assert world.products.rows == {} and world.stamps.rows == {}


def test_an_empty_catalog_from_partner_center_withdraws_nothing():
    world = CatalogWorld()
    world.run_import()
    world.pc.withdrawn = set(world.pc.catalog.products)
    with pytest.raises(Exception, match="no products"):
        world.run_import()
    assert not any(p.withdrawn for p in world.products.rows.values())


# --- public catalog -------------------------------------------------------------------------


def test_public_catalog_lists_only_visible_categorised_products_in_category_order():
    world = seeded_world()
    page = catalog_views.public_catalog(world.reader.snapshot("demo"))
    listed = [i.name for i in page.items]
    assert "Exchange Online (Plan 1)" not in listed  # hidden
    assert "Project Plan 1" not in listed  # in no category
    assert listed.index("Microsoft 365 E3") < listed.index("Visio Plan 1")  # m365 before apps
    assert listed[-1] == "Microsoft Teams Phone Standard"  # add-ons last
    assert page.currency == "CZK"
    assert [c.id for c in page.categories] == ["m365", "enterprise", "apps", "addons"]


def test_public_catalog_shows_recommended_prices_and_never_cost_or_margin():
    world = seeded_world()
    page = catalog_views.public_catalog(world.reader.snapshot("demo"))
    body = json.loads(page.model_dump_json(by_alias=True))
    assert cost_fields(body) == []
    e3 = next(i for i in page.items if i.name == "Microsoft 365 E3")
    sku = next(s for s in world.product(BOTH).skus if not s.is_trial)
    line = sku.price("commercial", "P1Y", "annual", "CZK")
    offer = next(o for o in e3.offers if (o.term, o.billing_cycle) == ("P1Y", "annual"))
    assert offer.recommended_retail_price == Money(amount=line.erp, currency="CZK")
    assert offer.currency == "CZK"
    assert {o.term for o in e3.offers} == {"P1M", "P1Y", "P3Y"}


def test_search_is_case_and_accent_insensitive():
    world = seeded_world()
    snap = world.reader.snapshot("demo")
    assert names(catalog_views.public_catalog(snap, q="PRÉMIUM")) == {
        "Microsoft 365 Business Prémium"
    }
    assert names(catalog_views.public_catalog(snap, q="premium")) == {
        "Microsoft 365 Business Prémium"
    }
    assert names(catalog_views.public_catalog(snap, q="visio")) == {"Visio Plan 1"}
    assert names(catalog_views.public_catalog(snap, q="no such thing")) == set()


def test_category_filter_includes_its_children_and_segment_filter_what_it_may_buy():
    world = seeded_world()
    snap = world.reader.snapshot("demo")
    assert names(catalog_views.public_catalog(snap, category="enterprise")) == {"Microsoft 365 E3"}
    m365 = names(catalog_views.public_catalog(snap, category="m365"))
    assert m365 == {
        "Microsoft 365 Business Basic",
        "Microsoft 365 Business Prémium",
        "Microsoft 365 E3",
        "Microsoft 365 A3 for faculty",
    }
    edu = names(catalog_views.public_catalog(snap, segment="education"))
    assert "Microsoft 365 A3 for faculty" in edu and "Visio Plan 1" not in edu
    gov = names(catalog_views.public_catalog(snap, segment="government"))
    assert gov == {"Microsoft 365 E3"}


def test_paging_walks_the_whole_filtered_list_once():
    world = seeded_world()
    snap = world.reader.snapshot("demo")
    seen, token = [], None
    while True:
        page = catalog_views.public_catalog(snap, page_size=3, continuation_token=token)
        seen += [i.id for i in page.items]
        token = page.continuation_token
        if token is None:
            break
    assert seen == [i.id for i in catalog_views.public_catalog(snap, page_size=100).items]
    with pytest.raises(ValidationFailed):
        catalog_views.public_catalog(snap, continuation_token="not-a-token")


def test_product_detail_lists_its_addons_and_unknown_products_are_not_found():
    world = seeded_world()
    snap = world.reader.snapshot("demo")
    teams = catalog_views.public_product(snap, world.pid(TEAMS))
    assert [a.id for a in teams.addons] == [world.pid(ADDON)]
    with pytest.raises(NotFound):
        catalog_views.public_product(snap, world.pid("exchange-p1"))  # hidden
    with pytest.raises(NotFound):
        catalog_views.public_product(snap, "NOSUCHPRODUCT")


def test_an_edit_by_demo_shows_in_demos_catalog_and_not_in_others():
    world = seeded_world()
    before_other = catalog_views.public_catalog(world.reader.snapshot("other"))
    world.put("demo", BOTH, categories=["m365"], name="E3 for Demo customers")
    assert "E3 for Demo customers" in names(
        catalog_views.public_catalog(world.reader.snapshot("demo"))
    )
    after_other = catalog_views.public_catalog(world.reader.snapshot("other"))
    assert names(after_other) == names(before_other) == {"Microsoft 365 E3"}
    assert after_other.currency == "EUR"


def test_recommended_price_override_replaces_microsofts():
    world = seeded_world()
    world.put(
        "demo",
        COMMERCIAL_ONLY,
        categories=["apps"],
        recommendedPrices=[
            {
                "skuId": "0001",
                "term": "P1Y",
                "billingCycle": "annual",
                "price": {"amount": "1234.565", "currency": "CZK"},
            }
        ],
    )
    visio = catalog_views.public_product(world.reader.snapshot("demo"), world.pid(COMMERCIAL_ONLY))
    offer = next(o for o in visio.offers if (o.term, o.billing_cycle) == ("P1Y", "annual"))
    assert offer.recommended_retail_price == Money.of("1234.57", "CZK")  # half-up to haléře


# --- customer catalog -----------------------------------------------------------------------


def test_education_customer_sees_education_offers_and_not_commercial_only_products():
    world = seeded_world()
    cat = catalog_views.customer_catalog(world.reader.snapshot("demo"), STAFF, "C1", "education")
    got = names(cat)
    assert world.product(EDU_ONLY).title in got
    assert "Visio Plan 1" not in got
    for item in cat.items:
        for offer in item.offers:
            assert offer.catalog_item_id.endswith(
                next(
                    a.id
                    for s in world.product_by_id(item.id).skus
                    for a in s.availabilities
                    if a.segment == "education" and s.id == offer.sku_id
                )
            )


def test_staff_see_reseller_cost_recommended_customer_price_and_margin_with_the_default_markup():
    world = seeded_world()
    cat = catalog_views.customer_catalog(world.reader.snapshot("demo"), STAFF, "C1", "commercial")
    assert isinstance(cat, CustomerCatalogStaff)
    e3 = next(i for i in cat.items if i.id == world.pid(BOTH))
    offer = next(o for o in e3.offers if (o.term, o.billing_cycle) == ("P1Y", "annual"))
    line = next(s for s in world.product(BOTH).skus if s.id == "0001").price(
        "commercial", "P1Y", "annual", "CZK"
    )
    # No distributor mark-up here: the reseller cost is Microsoft's cost, rounded.
    assert offer.reseller_cost == Money.of(line.cost, "CZK").rounded()
    assert offer.customer_price == (offer.reseller_cost * Decimal("1.10")).rounded()
    assert offer.margin == offer.customer_price - offer.reseller_cost
    assert offer.markup_percent == Decimal("10")
    assert offer.price_source == "defaultMarkup" and not offer.pinned and not offer.below_cost
    # The simulator's cost is 90 % of ERP, so a 10 % mark-up stays below the recommended price.
    assert Decimal("0.90") == PARTNER_COST_SHARE
    assert offer.customer_price < offer.recommended_retail_price


def test_customer_users_see_only_their_price():
    world = seeded_world()
    cat = catalog_views.customer_catalog(
        world.reader.snapshot("demo"), CUSTOMER, "C1", "commercial"
    )
    assert isinstance(cat, CustomerCatalogPublic)
    body = json.loads(cat.model_dump_json(by_alias=True))
    assert cost_fields(body) == []
    assert "recommendedRetailPrice" not in json.dumps(body)
    assert all("price" in o for i in body["items"] for o in i["offers"])


def test_a_markup_rule_and_a_pinned_price_set_the_customer_price():
    world = seeded_world()
    world.put(
        "demo",
        BOTH,
        categories=["m365"],
        markupPercent="25",
        customerPrices=[
            {"skuId": "0001", "term": "P1M", "billingCycle": "monthly", "price": "999.99"}
        ],
    )
    entry = world.store.entries[("demo", world.pid(BOTH))]
    # Kept as a price with its currency (a bare amount is taken in the reseller's currency).
    assert entry.pinned_prices[0].price == Money.of("999.99", "CZK")
    assert entry.offer_markups == []
    cat = catalog_views.customer_catalog(world.reader.snapshot("demo"), STAFF, "C1", "commercial")
    e3 = next(i for i in cat.items if i.id == world.pid(BOTH))
    by_term = {(o.term, o.billing_cycle): o for o in e3.offers}
    assert by_term[("P1M", "monthly")].customer_price == Money.of("999.99", "CZK")
    assert by_term[("P1M", "monthly")].pinned
    annual = by_term[("P1Y", "annual")]
    assert annual.customer_price == (annual.reseller_cost * Decimal("1.25")).rounded()


def test_a_pinned_price_below_cost_is_allowed_and_flagged():
    world = seeded_world()
    below = [{"skuId": "0001", "term": "P1M", "billingCycle": "monthly", "price": "1.00"}]
    world.put("demo", BOTH, categories=["m365"], customerPrices=below)
    cat = catalog_views.customer_catalog(world.reader.snapshot("demo"), STAFF, "C1", "commercial")
    e3 = next(i for i in cat.items if i.id == world.pid(BOTH))
    monthly = next(o for o in e3.offers if o.term == "P1M")
    assert monthly.customer_price == Money.of("1.00", "CZK") and monthly.margin.amount < 0
    assert monthly.below_cost is True
    assert all(not o.below_cost for o in e3.offers if o.term != "P1M")


def test_a_negative_markup_is_refused_unless_meant():
    world = seeded_world()
    with pytest.raises(ValidationFailed) as err:
        world.put("demo", BOTH, categories=["m365"], markupPercent="-5")
    assert err.value.errors[0].field == "markupPercent"
    world.put("demo", BOTH, categories=["m365"], markupPercent="-5", belowCost=True)


def test_a_custom_segment_buys_only_what_it_is_given_at_its_base_prices():
    world = seeded_world()
    world.segments("demo", [{"id": "schools-plus", "name": "Schools+", "base": "education"}])
    world.put("demo", EDU_ONLY, categories=["m365"], segments=["education", "schools-plus"])
    snap = world.reader.snapshot("demo")
    got = names(catalog_views.public_catalog(snap, segment="schools-plus"))
    # Entries without a segment list are sold to every segment Microsoft sells them in.
    assert world.product(EDU_ONLY).title in got and "Microsoft 365 E3" in got
    assert "Visio Plan 1" not in got


# --- editing rules --------------------------------------------------------------------------


def test_entry_edits_need_the_current_etag():
    world = seeded_world()
    pid = world.pid(BOTH)
    current = world.store.entries[("demo", pid)]
    body = CatalogEntryPut(categories=["m365"])
    args = (world.store, world.products, world.resellers, world.clock, "demo", pid)
    with pytest.raises(PreconditionRequired):
        catalog_editing.put_entry(*args, None, body)
    with pytest.raises(ConcurrencyConflict):
        catalog_editing.put_entry(*args, "stale", body)
    catalog_editing.put_entry(*args, current.etag, body)
    fresh = world.pid("exchange-p2")
    with pytest.raises(PreconditionFailed):
        catalog_editing.put_entry(*args[:-1], fresh, "anything", body)


def test_unknown_categories_segments_and_offers_are_named():
    world = seeded_world()
    with pytest.raises(ValidationFailed) as err:
        world.put(
            "demo",
            "exchange-p2",
            categories=["nope"],
            segments=["martians"],
            recommendedPrices=[
                {"skuId": "9999", "term": "P1Y", "billingCycle": "annual", "amount": "1"}
            ],
        )
    assert {e.field for e in err.value.errors} == {
        "categories.0",
        "segments.0",
        "recommendedPrices.0",
    }
    with pytest.raises(NotFound):
        catalog_editing.put_entry(
            world.store,
            world.products,
            world.resellers,
            world.clock,
            "demo",
            "NOSUCH",
            None,
            CatalogEntryPut(),
        )


def test_categories_nest_one_level_and_microsofts_segments_stay():
    world = seeded_world()
    with pytest.raises(ValidationFailed):
        world.categories(
            "demo",
            [
                {"id": "a", "name": "A"},
                {"id": "b", "name": "B", "parentId": "a"},
                {"id": "c", "name": "C", "parentId": "b"},
            ],
        )
    with pytest.raises(ValidationFailed):
        world.categories("demo", [{"id": "a", "name": "A"}, {"id": "a", "name": "Again"}])
    with pytest.raises(ValidationFailed):
        world.segments("demo", [{"id": "education", "name": "Edu", "base": "commercial"}])
    world.segments("demo", [{"id": "education", "name": "Schools", "base": "education"}])
    seg = world.store.settings["demo"].segment("education")
    assert seg is not None and seg.name == "Schools"
    assert [s.id for s in world.store.settings["demo"].segments][:4] == [
        "commercial",
        "education",
        "government",
        "nonprofit",
    ]


# --- the cache ------------------------------------------------------------------------------


def test_a_cached_read_costs_two_point_reads_and_no_query():
    world = seeded_world()
    world.reader.snapshot("demo")
    reads, queries = world.store.point_reads + world.stamps.point_reads, world.store.queries
    product_queries, reseller_reads = world.products.queries, world.resellers.point_reads
    for _ in range(5):
        world.reader.snapshot("demo")
    assert world.store.point_reads + world.stamps.point_reads == reads + 10
    assert world.store.queries == queries
    assert world.products.queries == product_queries
    assert world.resellers.point_reads == reseller_reads


def test_a_miss_after_an_edit_costs_one_query_and_products_stay_cached():
    world = seeded_world()
    world.reader.snapshot("demo")
    world.reader.snapshot("other")
    queries, product_queries = world.store.queries, world.products.queries
    world.put("demo", BOTH, categories=["m365"], name="Renamed")
    snap = world.reader.snapshot("demo")
    assert world.store.queries == queries + 1
    assert world.products.queries == product_queries
    assert "Renamed" in names(catalog_views.public_catalog(snap))
    world.reader.snapshot("other")
    assert world.store.queries == queries + 1  # other's catalog did not change


def test_an_import_that_changes_prices_invalidates_every_resellers_cache():
    world = seeded_world()
    old = catalog_views.public_product(world.reader.snapshot("other"), world.pid(BOTH))
    world.pc.catalog.sku_by_slug(BOTH).erp_month_eur = Decimal("40.00")
    world.run_import()
    new = catalog_views.public_product(world.reader.snapshot("other"), world.pid(BOTH))
    assert old.offers[0].recommended_retail_price != new.offers[0].recommended_retail_price


def test_a_withdrawn_product_disappears_from_the_catalog():
    world = seeded_world()
    world.pc.withdrawn.add(world.pid(COMMERCIAL_ONLY))
    world.run_import()
    assert "Visio Plan 1" not in names(catalog_views.public_catalog(world.reader.snapshot("demo")))


def test_an_unknown_reseller_is_not_found():
    world = seeded_world()
    with pytest.raises(NotFound):
        world.reader.snapshot("nobody")

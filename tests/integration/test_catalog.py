"""The catalog on real adapters: Partner Center simulator → import → Azurite → views, and the
public catalog anonymously through the local functions host.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from localdev.azurite import Azurite
from localdev.funchost.config import quiet_timers
from localdev.funchost.process import HostProcess
from localdev.partner_center_sim import SimulatorHandle
from localdev.partner_center_sim.catalog import Catalog
from shared.bootstrap import Container
from shared.config import Settings
from shared.domain.identity import Principal, Role, SignInKind
from shared.services import catalog_editing, catalog_import, catalog_views
from shared.services.catalog_editing import CatalogEntryPut, CategoriesPut
from tests.catalog_fakes import (
    BOTH,
    COMMERCIAL_ONLY,
    DEMO_CATEGORIES,
    DEMO_ENTRIES,
    EDU_ONLY,
    cost_fields,
)
from tests.fakes import onboard
from tests.integration.test_partner_center_contract import UNPACED, pc_settings

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
STAFF = Principal("u1", "demo", None, Role.SALES, "s@demo.example", SignInKind.PLATFORM)
EDU_CUSTOMER, COM_CUSTOMER = "01JCXSTE00000000000000000E", "01JCXSTF00000000000000000F"
CUSTOMER_USER = Principal(
    "u2", "demo", EDU_CUSTOMER, Role.CUSTOMER_READER, "c@edu.example", SignInKind.PLATFORM
)


def storage_settings(azurite: Azurite, prefix: str) -> dict[str, str]:
    return {
        "APP_ENVIRONMENT": "test",
        "AzureWebJobsStorage": azurite.connection_string,
        "TABLE_PREFIX": prefix,
    }


@pytest.fixture
def seeded(
    azurite: Azurite, table_prefix: str, fresh_partner_center_sim: SimulatorHandle
) -> Iterator[tuple[Container, dict[str, str]]]:
    """demo (CZK) and other (EUR) onboarded, CZ imported from the simulator, demo curated."""
    settings = pc_settings(fresh_partner_center_sim, **UNPACED)
    base = settings.model_dump(by_alias=True, exclude_none=True)
    values = {k: v for k, v in base.items() if k.startswith("PARTNER_CENTER_")}
    values = {
        k: v.get_secret_value() if hasattr(v, "get_secret_value") else str(v)
        for k, v in values.items()
    }
    values.update(storage_settings(azurite, table_prefix))
    c = Container(Settings.model_validate(values))
    for slug, currency in (("demo", "CZK"), ("other", "EUR")):
        onboard(c.resellers, c.clock, slug, currency, name=slug.title())
    report = catalog_import.import_market(
        c.partner_center, c.products, c.market_stamps, c.clock, "CZ"
    )
    assert report.added == report.products > 30
    titles = {p.title: p.id for p in c.products.iterate("CZ")}
    sim = Catalog()
    ids = {slug: sim.sku_by_slug(slug).product_id for slug, _, _ in DEMO_ENTRIES}
    assert set(ids.values()) <= set(titles.values())
    catalog_editing.put_categories(
        c.catalog_store, c.clock, "demo", None, CategoriesPut(categories=DEMO_CATEGORIES)
    )
    for slug, cats, extra in DEMO_ENTRIES:
        catalog_editing.put_entry(
            c.catalog_store,
            c.products,
            c.resellers,
            c.clock,
            "demo",
            ids[slug],
            None,
            CatalogEntryPut.model_validate({"categories": cats, **extra}),
        )
    catalog_editing.put_categories(
        c.catalog_store,
        c.clock,
        "other",
        None,
        CategoriesPut.model_validate({"categories": [{"id": "all", "name": "All"}]}),
    )
    catalog_editing.put_entry(
        c.catalog_store,
        c.products,
        c.resellers,
        c.clock,
        "other",
        ids[BOTH],
        None,
        CatalogEntryPut(categories=["all"]),
    )
    # The Customers table as the customers module writes it: keys and a Segment property.
    customers = c.store.table("Customers")
    customers.upsert_entity(
        {"PartitionKey": "demo", "RowKey": EDU_CUSTOMER, "Segment": "education"}
    )
    customers.upsert_entity(
        {"PartitionKey": "demo", "RowKey": COM_CUSTOMER, "Segment": "commercial"}
    )
    yield c, ids


def ids_of(page: Any) -> set[str]:
    return {i.id for i in page.items}


def test_reimport_from_partner_center_writes_nothing_when_nothing_changed(seeded):
    c, _ = seeded
    before = {p.id: p.etag for p in c.products.iterate("CZ")}
    stamp = c.market_stamps.get("market", "CZ")
    again = catalog_import.import_market(
        c.partner_center, c.products, c.market_stamps, c.clock, "CZ"
    )
    assert again.unchanged == again.products and not again.stamp_changed
    assert {p.id: p.etag for p in c.products.iterate("CZ")} == before
    assert c.market_stamps.get("market", "CZ").etag == stamp.etag


def test_filters_return_exactly_the_expected_products(seeded):
    c, ids = seeded
    snap = c.catalog_reader.snapshot("demo")
    assert ids_of(catalog_views.public_catalog(snap, q="VISIO")) == {ids[COMMERCIAL_ONLY]}
    assert ids_of(catalog_views.public_catalog(snap, q="prémium")) == {ids["m365-business-premium"]}
    assert ids_of(catalog_views.public_catalog(snap, category="enterprise")) == {ids[BOTH]}
    assert ids_of(catalog_views.public_catalog(snap, category="apps")) == {
        ids[COMMERCIAL_ONLY],
        ids["powerbi-pro"],
        ids["teams-enterprise"],
    }
    assert ids_of(catalog_views.public_catalog(snap, segment="government")) == {ids[BOTH]}
    listed = ids_of(catalog_views.public_catalog(snap, page_size=100))
    assert ids["exchange-p1"] not in listed and ids["project-plan-1"] not in listed


def test_education_customer_sees_education_offers_and_not_commercial_only_ones(seeded):
    c, ids = seeded
    snap = c.catalog_reader.snapshot("demo")
    segment = c.customer_directory.segment_of("demo", EDU_CUSTOMER)
    edu = catalog_views.customer_catalog(snap, STAFF, EDU_CUSTOMER, segment, page_size=100)
    assert ids[EDU_ONLY] in ids_of(edu) and ids[COMMERCIAL_ONLY] not in ids_of(edu)
    assert edu.segment == "education"
    com_segment = c.customer_directory.segment_of("demo", COM_CUSTOMER)
    com = catalog_views.customer_catalog(snap, STAFF, COM_CUSTOMER, com_segment, page_size=100)
    assert ids[COMMERCIAL_ONLY] in ids_of(com) and ids[EDU_ONLY] not in ids_of(com)
    own = catalog_views.customer_catalog(snap, CUSTOMER_USER, EDU_CUSTOMER, segment, page_size=100)
    assert cost_fields(json.loads(own.model_dump_json(by_alias=True))) == []
    assert cost_fields(json.loads(edu.model_dump_json(by_alias=True)))


def test_an_edit_by_demo_is_in_demos_catalog_and_not_in_others(seeded):
    c, ids = seeded
    other_before = catalog_views.public_catalog(c.catalog_reader.snapshot("other"))
    current = c.catalog_store.find_entry("demo", ids[BOTH])
    assert current is not None
    catalog_editing.put_entry(
        c.catalog_store,
        c.products,
        c.resellers,
        c.clock,
        "demo",
        ids[BOTH],
        current.etag,
        CatalogEntryPut(categories=["m365"], name="E3 u Dema"),
    )
    demo = catalog_views.public_catalog(c.catalog_reader.snapshot("demo"), q="dema")
    assert [i.name for i in demo.items] == ["E3 u Dema"]
    other = catalog_views.public_catalog(c.catalog_reader.snapshot("other"))
    assert [i.name for i in other.items] == [i.name for i in other_before.items]
    assert "E3 u Dema" not in {i.name for i in other.items}


def test_anonymous_public_catalog_through_the_local_host(seeded, azurite, table_prefix, tmp_path):
    _, ids = seeded
    env = {
        **quiet_timers(),
        **os.environ,
        **storage_settings(azurite, table_prefix),
        "OUTBOX_SWEEP_SCHEDULE": "0 0 0 * * *",
        "HOUSEKEEPING_SCHEDULE": "0 0 0 1 1 *",
        "REMINDER_SCHEDULE": "0 0 0 1 1 *",
        "USAGE_IMPORT_SCHEDULE": "0 0 0 1 1 *",
        "SYNC_SCHEDULE": "0 0 0 1 1 *",
        "CATALOG_IMPORT_SCHEDULE": "0 0 0 1 1 *",
    }
    host = HostProcess(
        cwd=ROOT,
        env=env,
        settings=tmp_path / "none.json",
        extra_args=["--no-queues", "--no-timers"],
        log_path=tmp_path / "host.log",
    ).start(timeout=60)
    try:
        base = f"{host.base_url}/api/resellers"
        with httpx.Client(timeout=30) as http:
            bodies = []
            for path, params in [
                ("demo/catalog", {}),
                ("demo/catalog", {"segment": "education"}),
                ("demo/catalog", {"q": "visio"}),
                (f"demo/catalog/products/{ids['teams-enterprise']}", {}),
                ("other/catalog", {}),
            ]:
                resp = http.get(f"{base}/{path}", params=params)
                assert resp.status_code == 200, (path, resp.text)
                bodies.append(resp.json())
            assert all(cost_fields(b) == [] for b in bodies)
            assert [i["id"] for i in bodies[2]["items"]] == [ids[COMMERCIAL_ONLY]]
            assert bodies[3]["addons"] and bodies[0]["currency"] == "CZK"
            assert bodies[4]["currency"] == "EUR"
            bad = http.get(f"{base}/demo/catalog", params={"pageSize": "abc"})
            assert bad.status_code == 400
            assert bad.headers["content-type"].startswith("application/problem+json")
            missing = http.get(f"{base}/nobody/catalog")
            assert missing.status_code == 404
    finally:
        host.stop()

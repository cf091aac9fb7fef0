"""Catalog figures: the public catalog through the local host vs. the /api/health floor."""

from __future__ import annotations

import httpx

from bench.common import http_caller, latency, running_app, table, throughput
from localdev.partner_center_sim.catalog import Catalog
from shared.bootstrap import Container
from shared.config import Settings
from shared.domain.identity import IndirectReseller
from shared.services import catalog_editing, catalog_import, resellers
from shared.services.catalog_editing import CatalogEntryPut, CategoriesPut
from shared.services.resellers import ResellerCreate
from tests.catalog_fakes import DEMO_CATEGORIES, DEMO_ENTRIES, SimCatalogPartnerCenter
from tests.fakes import FakeClock

_DEMO_TENANT, _DEMO_MPN = "3f2c6a1e-8d4b-4c1a-9b7e-2a5d0c9e4f10", "6412345"


class _KnownReseller:
    """Partner Center's list of indirect resellers, as far as this benchmark needs it."""

    def list_indirect_resellers(self) -> list[IndirectReseller]:
        return [IndirectReseller(tenant_id=_DEMO_TENANT, name="Demo", mpn_id=_DEMO_MPN)]


def _seed(connection_string: str) -> None:
    """demo onboarded, CZ imported (the simulator's catalog in-process), demo curated."""
    c = Container(
        Settings.model_validate(
            {"APP_ENVIRONMENT": "test", "AzureWebJobsStorage": connection_string}
        )
    )
    resellers.onboard(
        c.resellers,
        c.clock,
        ResellerCreate(
            slug="demo",
            name="Demo",
            partner_center_tenant_id=_DEMO_TENANT,
            mpn_id=_DEMO_MPN,
            country="CZ",
            currency="CZK",
        ),
        _KnownReseller(),
    )
    catalog_import.import_market(
        SimCatalogPartnerCenter(FakeClock()), c.products, c.market_stamps, c.clock, "CZ"
    )
    catalog_editing.put_categories(
        c.catalog_store, c.clock, "demo", None, CategoriesPut(categories=DEMO_CATEGORIES)
    )
    sim = Catalog()
    for slug, cats, extra in DEMO_ENTRIES:
        catalog_editing.put_entry(
            c.catalog_store,
            c.products,
            c.resellers,
            c.clock,
            "demo",
            sim.sku_by_slug(slug).product_id,
            None,
            CatalogEntryPut.model_validate({"categories": cats, **extra}),
        )


def public_vs_health(n: int = 300, total: int = 800, workers: int = 8) -> list[tuple[str, ...]]:
    """GET /api/resellers/demo/catalog (cache warm) vs. GET /api/health on the same host."""
    with running_app(seed=_seed) as (base, _):
        health, public = f"{base}/health", f"{base}/resellers/demo/catalog"
        client = httpx.Client()
        assert client.get(public).status_code == 200
        c50, c99 = latency(lambda: client.get(public), n)
        h50, h99 = latency(lambda: client.get(health), n)
        c_rps = throughput(http_caller(public), total, workers)
        h_rps = throughput(http_caller(health), total, workers)
    return [
        ("public catalog p50 (ms) vs /api/health", f"{c50:.2f}", f"{h50:.2f}", f"{c50 / h50:.2f}"),
        ("public catalog p99 (ms) vs /api/health", f"{c99:.2f}", f"{h99:.2f}", f"{c99 / h99:.2f}"),
        (
            f"public catalog requests/s ({workers} clients) vs /api/health",
            f"{c_rps:.0f}",
            f"{h_rps:.0f}",
            f"{c_rps / h_rps:.2f}",
        ),
    ]


def main() -> None:
    """Print the catalog's figures."""
    print(table("Catalog", public_vs_health()), flush=True)

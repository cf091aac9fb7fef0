"""Catalog figures: the public catalog through the local host vs. the /api/health floor."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import latency, table, throughput
from localdev import azurite
from localdev.partner_center_sim.catalog import Catalog
from shared.bootstrap import Container
from shared.config import Settings
from shared.services import catalog, catalog_import, resellers
from shared.services.catalog import CatalogEntryPut, CategoriesPut
from shared.services.resellers import ResellerCreate
from tests.catalog_fakes import DEMO_CATEGORIES, DEMO_ENTRIES, SimCatalogPartnerCenter
from tests.fakes import FakeClock

ROOT = Path(__file__).resolve().parent.parent


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
            slug="demo", name="Demo", partner_center_id="12345678", country="CZ", currency="CZK"
        ),
    )
    catalog_import.import_market(
        SimCatalogPartnerCenter(FakeClock()), c.products, c.market_stamps, c.clock, "CZ"
    )
    catalog.put_categories(
        c.catalog_store, c.clock, "demo", None, CategoriesPut(categories=DEMO_CATEGORIES)
    )
    sim = Catalog()
    for slug, cats, extra in DEMO_ENTRIES:
        catalog.put_entry(
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
    with tempfile.TemporaryDirectory() as tmp:
        storage = azurite.start_npm(Path(tmp) / "az")
        port = azurite.free_port()
        env = {
            **os.environ,
            "AzureWebJobsStorage": storage.connection_string,
            "APP_ENVIRONMENT": "test",
            "OUTBOX_SWEEP_SCHEDULE": "0 0 0 * * *",
            "CATALOG_IMPORT_SCHEDULE": "0 0 0 1 1 *",
        }
        _seed(storage.connection_string)
        host = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "localdev.host",
                "--port",
                str(port),
                "--no-queues",
                "--no-timers",
                "--settings",
                str(Path(tmp) / "none.json"),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            health = f"http://127.0.0.1:{port}/api/health"
            public = f"http://127.0.0.1:{port}/api/resellers/demo/catalog"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(health).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or host.poll() is not None:
                    raise RuntimeError("the local host did not start")
                time.sleep(0.3)
            client = httpx.Client()
            assert client.get(public).status_code == 200
            c50, c99 = latency(lambda: client.get(public), n)
            h50, h99 = latency(lambda: client.get(health), n)

            def caller(url: str):  # type: ignore[no-untyped-def]
                def make():  # type: ignore[no-untyped-def]
                    c = httpx.Client()
                    return lambda: c.get(url)

                return make

            c_rps = throughput(caller(public), total, workers)
            h_rps = throughput(caller(health), total, workers)
        finally:
            host.terminate()
            host.wait(timeout=20)
            storage.stop()
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

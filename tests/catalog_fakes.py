"""Catalog test helpers: the simulator's catalog in-process, counting stores, a seeded world."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from localdev.partner_center_sim import render
from localdev.partner_center_sim.catalog import Catalog
from shared.adapters.partner_center import catalog as mapping
from shared.adapters.partner_center import wire as pc
from shared.adapters.partner_center.price_sheet import parse_price_sheet
from shared.adapters.tables.repository import read_version
from shared.domain.catalog import (
    CatalogEntry,
    CatalogSettings,
    CatalogState,
    CatalogVersion,
    OfferedProduct,
    PriceLine,
    Product,
    ProductSku,
)
from shared.domain.errors import ConcurrencyConflict, Conflict
from shared.domain.identity import Reseller
from shared.services import catalog_editing, catalog_import
from shared.services.catalog import CatalogReader
from shared.services.catalog_editing import CatalogEntryPut, CategoriesPut, SegmentsPut
from tests.fakes import FakeClock, InMemoryRepository, onboard

EDU_ONLY = "m365-a3-faculty"  # sold to education only
COMMERCIAL_ONLY = "visio-plan-1"  # sold to commercial only
BOTH = "m365-e3"  # sold in every segment, with an add-on (none) and long terms
ADDON = "teams-phone"  # an add-on of Teams-carrying products
TEAMS = "teams-enterprise"


class SimCatalogPartnerCenter:
    """The catalog half of the PartnerCenter port, answered from the simulator's catalog."""

    def __init__(self, clock: FakeClock, catalog_: Catalog | None = None) -> None:
        self.catalog = catalog_ or Catalog()
        self.clock = clock
        self.withdrawn: set[str] = set()
        self.calls = 0
        self.fail_on: str | None = None

    def _call(self, name: str) -> None:
        self.calls += 1
        if self.fail_on == name:
            from shared.domain.errors import UpstreamUnavailable

            raise UpstreamUnavailable("Partner Center is down")

    def list_products(
        self, country: str, target_view: str, *, target_segment: str | None = None
    ) -> list[pc.Product]:
        """Products of a view, minus the withdrawn ones."""
        self._call("list_products")
        return [
            pc.Product.model_validate(render.product(p, country))
            for p in self.catalog.list_products(target_view, target_segment)
            if p.id not in self.withdrawn
        ]

    def list_skus(
        self, product_id: str, country: str, *, target_segment: str | None = None
    ) -> list[pc.Sku]:
        """SKUs of a product."""
        self._call("list_skus")
        return [
            pc.Sku.model_validate(render.sku(s, country))
            for s in self.catalog.product(product_id).skus
        ]

    def list_availabilities(
        self, product_id: str, sku_id: str, country: str, *, target_segment: str | None = None
    ) -> list[pc.Availability]:
        """Availabilities of a SKU."""
        self._call("list_availabilities")
        product = self.catalog.product(product_id)
        sku = self.catalog.sku(product_id, sku_id)
        return [
            pc.Availability.model_validate(render.availability(a, product, sku, country, "EUR"))
            for a in sku.availabilities
        ]

    def get_price_sheet(
        self, market: str, *, view: str = "updatedlicensebased"
    ) -> Iterator[pc.PriceSheetRow]:
        """The CSV price sheet, parsed by the production parser."""
        self._call("get_price_sheet")
        text = self.catalog.price_sheet_csv(market, self.clock.now())
        return parse_price_sheet(io.BytesIO(text.encode("utf-8")))

    # The port, mapped from the simulator's JSON by the adapter's own mapping.

    def catalog_products(self, market: str, target_view: str) -> list[OfferedProduct]:
        """Products of a view, minus the withdrawn ones."""
        return [mapping.offered_product(p) for p in self.list_products(market, target_view)]

    def product_skus(self, product_id: str, market: str) -> list[ProductSku]:
        """SKUs of a product with their availabilities."""
        return [
            mapping.product_sku(
                product_id, sku, self.list_availabilities(product_id, sku.id, market)
            )
            for sku in self.list_skus(product_id, market)
        ]

    def price_lines(self, market: str) -> Iterator[PriceLine]:
        """The price sheet's lines."""
        return (mapping.price_line(row) for row in self.get_price_sheet(market))

    def product_id(self, slug: str) -> str:
        """The id of a product by its simulator slug."""
        return self.catalog.sku_by_slug(slug).product_id


class CountingRepository(InMemoryRepository[Any]):
    """An in-memory repository that counts point reads, queries and writes."""

    def __init__(self, keys: Any) -> None:
        super().__init__(keys)
        self.point_reads = 0
        self.queries = 0
        self.writes = 0

    def find(self, partition: str, row: str) -> Any:
        """Count, then read."""
        self.point_reads += 1
        return super().find(partition, row)

    def list(self, partition: str | None = None, **kw: Any) -> Any:
        """Count, then query."""
        self.queries += 1
        return super().list(partition, **kw)

    def save_all(self, partition: str, **kw: Any) -> Any:
        """Count the records written."""
        self.writes += len(kw.get("adds", ())) + len(kw.get("updates", ()))
        return super().save_all(partition, **kw)


class InMemoryCatalogStore:
    """The CatalogStore port in memory, with the same version and ETag rules; counts reads."""

    def __init__(self) -> None:
        self.settings: dict[str, CatalogSettings] = {}
        self.entries: dict[tuple[str, str], CatalogEntry] = {}
        self.versions: dict[str, str] = {}
        self.point_reads = 0
        self.queries = 0
        self._n = 0

    def _etag(self) -> str:
        self._n += 1
        return f'W/"cat-{self._n}"'

    def version(self, reseller: str) -> str | None:
        """Point read of the version."""
        self.point_reads += 1
        return self.versions.get(reseller)

    def load(self, reseller: str) -> CatalogState:
        """One 'query' of the reseller's rows."""
        self.queries += 1
        return CatalogState(
            reseller=reseller,
            settings=self.settings[reseller].model_copy(deep=True)
            if reseller in self.settings
            else None,
            entries=[
                e.model_copy(deep=True) for (r, _), e in self.entries.items() if r == reseller
            ],
            version=self.versions.get(reseller),
        )

    def find_settings(self, reseller: str) -> CatalogSettings | None:
        """Point read of the settings."""
        self.point_reads += 1
        s = self.settings.get(reseller)
        return s.model_copy(deep=True) if s else None

    def find_entry(self, reseller: str, product_id: str) -> CatalogEntry | None:
        """Point read of an entry."""
        self.point_reads += 1
        e = self.entries.get((reseller, product_id))
        return e.model_copy(deep=True) if e else None

    def _check(self, current: Any, etag: str | None) -> None:
        if etag is None and current is not None:
            raise Conflict("exists")
        if etag is not None and (current is None or current.etag != read_version(etag)):
            raise ConcurrencyConflict("changed")

    def save_settings(self, settings: CatalogSettings, version: CatalogVersion) -> CatalogSettings:
        """Insert or replace with If-Match, bumping the version."""
        self._check(self.settings.get(settings.reseller), settings.etag)
        saved = settings.model_copy(deep=True)
        saved.etag = self._etag()
        self.settings[settings.reseller] = saved
        self.versions[settings.reseller] = version.version
        return saved.model_copy(deep=True)

    def save_entry(self, entry: CatalogEntry, version: CatalogVersion) -> CatalogEntry:
        """Insert or replace with If-Match, bumping the version."""
        key = (entry.reseller, entry.product_id)
        self._check(self.entries.get(key), entry.etag)
        saved = entry.model_copy(deep=True)
        saved.etag = self._etag()
        self.entries[key] = saved
        self.versions[entry.reseller] = version.version
        return saved.model_copy(deep=True)


class CatalogWorld:
    """Two resellers (demo in CZK, other in EUR), the CZ market imported, demo curated."""

    def __init__(self, clock: FakeClock | None = None, resellers: Any = None) -> None:
        self.clock = clock or FakeClock()
        self.pc = SimCatalogPartnerCenter(self.clock)
        self.products = CountingRepository(lambda p: (p.market, p.id))
        self.stamps = CountingRepository(lambda s: ("market", s.market))
        self.resellers = resellers or CountingRepository(lambda r: ("reseller", r.slug))
        self.store = InMemoryCatalogStore()
        self.reader = CatalogReader(
            self.store, self.products, self.stamps, self.resellers, self.clock
        )

    def add_reseller(self, slug: str, currency: str, margin: str = "10") -> Reseller:
        """Onboard a reseller in CZ."""
        return onboard(
            self.resellers, self.clock, slug, currency, name=f"{slug.title()} s.r.o.", margin=margin
        )

    def run_import(self) -> catalog_import.ImportReport:
        """Import CZ from the fake Partner Center."""
        return catalog_import.import_market(self.pc, self.products, self.stamps, self.clock, "CZ")

    def pid(self, slug: str) -> str:
        """Product id of a simulator slug."""
        return self.pc.product_id(slug)

    def product(self, slug: str) -> Product:
        """The stored product of a simulator slug."""
        stored: Product = self.products.rows[("CZ", self.pid(slug))]
        return stored

    def product_by_id(self, product_id: str) -> Product:
        """The stored product by id."""
        stored: Product = self.products.rows[("CZ", product_id)]
        return stored

    def categories(self, reseller: str, categories: list[dict[str, Any]]) -> None:
        """Replace a reseller's categories."""
        current = self.store.settings.get(reseller)
        catalog_editing.put_categories(
            self.store,
            self.clock,
            reseller,
            current.etag if current else None,
            CategoriesPut.model_validate({"categories": categories}),
        )

    def segments(self, reseller: str, segments: list[dict[str, Any]]) -> None:
        """Replace a reseller's own segments."""
        current = self.store.settings.get(reseller)
        catalog_editing.put_segments(
            self.store,
            self.clock,
            reseller,
            current.etag if current else None,
            SegmentsPut.model_validate({"segments": segments}),
        )

    def put(self, reseller: str, slug: str, **body: Any) -> CatalogEntry:
        """Create or replace a reseller's entry for a simulator product."""
        pid = self.pid(slug)
        current = self.store.entries.get((reseller, pid))
        return catalog_editing.put_entry(
            self.store,
            self.products,
            self.resellers,
            self.clock,
            reseller,
            pid,
            current.etag if current else None,
            CatalogEntryPut.model_validate(body),
        )


# The demo reseller's curated catalog: (slug, categories, extra entry fields).
DEMO_ENTRIES: list[tuple[str, list[str], dict[str, Any]]] = [
    ("m365-business-basic", ["m365"], {}),
    ("m365-business-premium", ["m365"], {"name": "Microsoft 365 Business Prémium"}),
    (BOTH, ["m365", "enterprise"], {}),
    (EDU_ONLY, ["m365"], {}),
    (COMMERCIAL_ONLY, ["apps"], {}),
    ("powerbi-pro", ["apps"], {}),
    (TEAMS, ["apps"], {}),
    (ADDON, ["addons"], {}),
    ("exchange-p1", ["apps"], {"visible": False}),
    ("project-plan-1", [], {}),  # in no category: not listed
]
DEMO_CATEGORIES = [
    {"id": "m365", "name": "Microsoft 365"},
    {"id": "enterprise", "name": "Enterprise", "parentId": "m365"},
    {"id": "apps", "name": "Apps"},
    {"id": "addons", "name": "Add-ons"},
]


_IMPORTED: dict[str, Any] = {}


def _import(world: CatalogWorld) -> None:
    # Importing the whole catalog per test is the slow part; copy one import's rows instead.
    if not _IMPORTED:
        world.run_import()
        _IMPORTED.update(products=dict(world.products.rows), stamps=dict(world.stamps.rows))
        return
    world.products.rows.update(_IMPORTED["products"])
    world.stamps.rows.update(_IMPORTED["stamps"])


def seeded_world(
    clock: FakeClock | None = None, resellers: Any = None, *, fresh_import: bool = True
) -> CatalogWorld:
    """The world with demo's catalog curated and `other` with one product."""
    world = CatalogWorld(clock, resellers)
    if resellers is None:
        world.add_reseller("demo", "CZK")
        world.add_reseller("other", "EUR", margin="20")
    if fresh_import:
        world.run_import()
    else:
        _import(world)
    world.categories("demo", DEMO_CATEGORIES)
    for slug, cats, extra in DEMO_ENTRIES:
        world.put("demo", slug, categories=cats, **extra)
    world.categories("other", [{"id": "all", "name": "All"}])
    world.put("other", BOTH, categories=["all"])
    return world


COST_WORDS = ("cost", "margin", "markup")


def cost_fields(value: Any, path: str = "$") -> list[str]:
    """Every key anywhere in a JSON document that names a cost, margin or mark-up."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            if any(w in str(key).lower() for w in COST_WORDS):
                found.append(f"{path}.{key}")
            found += cost_fields(inner, f"{path}.{key}")
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            found += cost_fields(inner, f"{path}[{i}]")
    return found


def now_of(world: CatalogWorld) -> datetime:
    """The world's current time."""
    return world.clock.now()


class FakeCustomers:
    """The CustomerDirectory port: (reseller, customer id) → segment."""

    def __init__(self, segments: dict[tuple[str, str], str] | None = None) -> None:
        self.segments = dict(segments or {})

    def segment_of(self, reseller: str, customer_id: str) -> str:
        """The customer's segment, or NotFound."""
        try:
            return self.segments[(reseller, customer_id)]
        except KeyError:
            from shared.domain.errors import NotFound

            raise NotFound("there is no such customer") from None


def install_catalog(
    container: Any, clock: FakeClock, customers: dict[tuple[str, str], str]
) -> CatalogWorld:
    """Put a seeded catalog world behind a fake container (its resellers already onboarded)."""
    world = seeded_world(clock, container.resellers, fresh_import=False)
    container.__dict__.update(
        products=world.products,
        market_stamps=world.stamps,
        catalog_store=world.store,
        catalog_reader=world.reader,
        customer_directory=FakeCustomers(customers),
        partner_center=world.pc,
    )
    return world

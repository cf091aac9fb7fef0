"""The catalog: public reads, the customer catalog with prices, curation by reseller staff."""

from __future__ import annotations

import azure.functions as func
from pydantic import ConfigDict, Field

from functions._http import Call, PageQuery, Reply, http
from shared.bootstrap import container
from shared.domain.catalog import MARKET_PATTERN, SLUG_ID
from shared.domain.model import Page, WireModel
from shared.services import catalog_editing, catalog_import, catalog_views
from shared.services.access import PUBLIC, Action, allow
from shared.services.catalog_editing import (
    CatalogEntryPut,
    CatalogEntryView,
    CatalogProductRow,
    CategoriesPut,
    CategoriesView,
    SegmentsPut,
    SegmentsView,
)
from shared.services.catalog_import import ImportReport
from shared.services.catalog_views import (
    CustomerCatalog,
    CustomerCatalogDistributor,
    CustomerCatalogPublic,
    CustomerCatalogStaff,
    PublicCatalog,
    PublicProductDetail,
)

bp = func.Blueprint()
TAGS = ("catalog",)
# Public answers may be cached briefly by browsers and proxies; edits show within that time.
PUBLIC_CACHE = {"Cache-Control": "public, max-age=30"}


class CustomerCatalogQuery(PageQuery):
    """Filters of the customer catalog."""

    q: str | None = Field(None, max_length=100, description="Name contains (any case, accents).")
    category: str | None = Field(None, pattern=SLUG_ID, description="A category (and children).")


class PublicCatalogQuery(CustomerCatalogQuery):
    """Filters of the public catalog. Unlike every other list, unknown parameters are ignored:
    the page is linked from anywhere (campaign tags, cache busters) and shows public prices."""

    model_config = ConfigDict(extra="ignore")

    segment: str | None = Field(None, pattern=SLUG_ID, description="Only what it may buy.")


class ProductQuery(WireModel):
    """Options of a product's public page."""

    segment: str | None = Field(None, pattern=SLUG_ID, description="Offers of this segment.")


class ImportQuery(WireModel):
    """Which market to import."""

    market: str = Field("CZ", pattern=MARKET_PATTERN, description="ISO country code.")


@http(
    bp,
    "resellers/{r}/catalog",
    ["GET"],
    name="http_public_catalog",
    summary="The reseller's public catalog: products with recommended retail prices.",
    query=PublicCatalogQuery,
    response=PublicCatalog,
    tags=TAGS,
    errors=(400, 404),
    access=PUBLIC,
)
def public_catalog(call: Call) -> Reply:
    """Categories, segments and one page of products (no sign-in, no cost or margin)."""
    q = call.query(PublicCatalogQuery)
    snap = container().catalog_reader.snapshot(call.route["r"])
    body = catalog_views.public_catalog(
        snap,
        q=q.q,
        category=q.category,
        segment=q.segment,
        page_size=q.page_size,
        continuation_token=q.continuation_token,
    )
    return Reply(body, headers=dict(PUBLIC_CACHE))


@http(
    bp,
    "resellers/{r}/catalog/products/{p}",
    ["GET"],
    name="http_public_catalog_product",
    summary="One product of the public catalog, with its add-ons.",
    query=ProductQuery,
    response=PublicProductDetail,
    tags=TAGS,
    errors=(400, 404),
    access=PUBLIC,
)
def public_catalog_product(call: Call) -> Reply:
    """A product's public page."""
    q = call.query(ProductQuery)
    snap = container().catalog_reader.snapshot(call.route["r"])
    body = catalog_views.public_product(snap, call.route["p"], segment=q.segment)
    return Reply(body, headers=dict(PUBLIC_CACHE))


@http(
    bp,
    "resellers/{r}/customers/{c}/catalog",
    ["GET"],
    name="http_customer_catalog",
    summary="What a customer may buy, priced (distributor: every layer; reseller staff: "
    "reseller cost and margin; customer users: their price).",
    query=CustomerCatalogQuery,
    response=CustomerCatalogDistributor | CustomerCatalogStaff | CustomerCatalogPublic,
    tags=TAGS,
    errors=(400,),
    access=allow(Action.BROWSE_CATALOG),
)
def customer_catalog(call: Call) -> CustomerCatalog:
    """The customer's catalog in the view the caller may see."""
    q = call.query(CustomerCatalogQuery)
    c = container()
    reseller, customer = call.route["r"], call.route["c"]
    segment = c.customer_directory.segment_of(reseller, customer)
    return catalog_views.customer_catalog(
        c.catalog_reader.snapshot(reseller),
        call.principal,
        customer,
        segment,
        q=q.q,
        category=q.category,
        page_size=q.page_size,
        continuation_token=q.continuation_token,
    )


@http(
    bp,
    "resellers/{r}/catalog/entries",
    ["GET"],
    name="http_list_catalog_entries",
    summary="Every product of the reseller's market with the reseller's entry, for curating.",
    query=PageQuery,
    response=Page[CatalogProductRow],
    tags=TAGS,
    errors=(400,),
    access=allow(Action.READ_CATALOG_SETUP),
)
def list_catalog_entries(call: Call) -> Page[CatalogProductRow]:
    """A page of the market's products and the reseller's entries."""
    q = call.query(PageQuery)
    return catalog_editing.catalog_products(
        container().catalog_reader,
        call.route["r"],
        page_size=q.page_size,
        continuation_token=q.continuation_token,
    )


@http(
    bp,
    "resellers/{r}/catalog/entries/{p}",
    ["GET"],
    name="http_get_catalog_entry",
    summary="The reseller's entry for one product, with its ETag.",
    response=CatalogEntryView,
    tags=TAGS,
    access=allow(Action.READ_CATALOG_SETUP),
)
def get_catalog_entry(call: Call) -> Reply:
    """One entry."""
    c = container()
    entry = catalog_editing.get_entry(
        c.catalog_store, c.resellers, call.route["r"], call.route["p"]
    )
    return Reply(catalog_editing.entry_view(entry), etag=entry.etag)


@http(
    bp,
    "resellers/{r}/catalog/products/{p}",
    ["PUT"],
    name="http_put_catalog_entry",
    summary="Show, place and price a product (If-Match once its entry exists).",
    body=CatalogEntryPut,
    response=CatalogEntryView,
    tags=TAGS,
    errors=(400, 409, 412, 428),
    access=allow(Action.MANAGE_CATALOG),
)
def put_catalog_entry(call: Call) -> Reply:
    """Create or replace the entry."""
    c = container()
    entry = catalog_editing.put_entry(
        c.catalog_store,
        c.products,
        c.resellers,
        c.clock,
        call.route["r"],
        call.route["p"],
        call.if_match_optional(),
        call.body(CatalogEntryPut),
    )
    return Reply(catalog_editing.entry_view(entry), etag=entry.etag)


@http(
    bp,
    "resellers/{r}/catalog/categories",
    ["GET"],
    name="http_get_catalog_categories",
    summary="The reseller's catalog categories, in order, with their ETag.",
    response=CategoriesView,
    tags=TAGS,
    access=allow(Action.READ_CATALOG_SETUP),
)
def get_catalog_categories(call: Call) -> Reply:
    """The categories."""
    settings = catalog_editing.get_settings(container().catalog_store, call.route["r"])
    return Reply(catalog_editing.categories_view(settings), etag=settings.etag)


@http(
    bp,
    "resellers/{r}/catalog/categories",
    ["PUT"],
    name="http_put_catalog_categories",
    summary="Replace the catalog's categories (ordered, nestable one level; If-Match).",
    body=CategoriesPut,
    response=CategoriesView,
    tags=TAGS,
    errors=(400, 409, 412, 428),
    access=allow(Action.MANAGE_CATALOG),
)
def put_catalog_categories(call: Call) -> Reply:
    """Replace the categories."""
    c = container()
    settings = catalog_editing.put_categories(
        c.catalog_store,
        c.clock,
        call.route["r"],
        call.if_match_optional(),
        call.body(CategoriesPut),
    )
    return Reply(catalog_editing.categories_view(settings), etag=settings.etag)


@http(
    bp,
    "resellers/{r}/segments",
    ["GET"],
    name="http_get_segments",
    summary="The reseller's customer segments, with their ETag.",
    response=SegmentsView,
    tags=TAGS,
    access=allow(Action.READ_CATALOG_SETUP),
)
def get_segments(call: Call) -> Reply:
    """The segments."""
    settings = catalog_editing.get_settings(container().catalog_store, call.route["r"])
    return Reply(catalog_editing.segments_view(settings), etag=settings.etag)


@http(
    bp,
    "resellers/{r}/segments",
    ["PUT"],
    name="http_put_segments",
    summary="Replace the reseller's own segments (Microsoft's four always stay; If-Match).",
    body=SegmentsPut,
    response=SegmentsView,
    tags=TAGS,
    errors=(400, 409, 412, 428),
    access=allow(Action.MANAGE_CATALOG),
)
def put_segments(call: Call) -> Reply:
    """Replace the segments."""
    c = container()
    settings = catalog_editing.put_segments(
        c.catalog_store, c.clock, call.route["r"], call.if_match_optional(), call.body(SegmentsPut)
    )
    return Reply(catalog_editing.segments_view(settings), etag=settings.etag)


@http(
    bp,
    "catalog/imports",
    ["POST"],
    name="http_import_catalog",
    summary="Import a market's catalog and price sheet from Partner Center now.",
    query=ImportQuery,
    response=ImportReport,
    tags=TAGS,
    errors=(400, 502, 503),
    access=allow(Action.IMPORT_CATALOG),
)
def import_catalog(call: Call) -> ImportReport:
    """Run the import (the same as the daily timer) and report what changed."""
    q = call.query(ImportQuery)
    c = container()
    return catalog_import.import_market(
        c.partner_center, c.products, c.market_stamps, c.clock, q.market
    )

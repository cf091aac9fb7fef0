"""Resellers: onboarding and editing (distributor admins); a reseller reads its own."""

from __future__ import annotations

import azure.functions as func

from functions._http import Call, PageQuery, Reply, http
from shared.bootstrap import container
from shared.domain.model import Page
from shared.services import resellers
from shared.services.access import Action, allow
from shared.services.resellers import (
    ResellerCreate,
    ResellerDistributor,
    ResellerPublic,
    ResellerStaff,
    ResellerUpdate,
)

bp = func.Blueprint()
TAGS = ("resellers",)


@http(
    bp,
    "resellers",
    ["GET"],
    name="http_list_resellers",
    summary="Every reseller of the platform.",
    query=PageQuery,
    response=Page[ResellerDistributor],
    tags=TAGS,
    access=allow(Action.LIST_RESELLERS),
)
def list_resellers(call: Call) -> Page[ResellerDistributor]:
    """A page of resellers."""
    q = call.query(PageQuery)
    return resellers.list_resellers(
        container().resellers, page_size=q.page_size, continuation_token=q.continuation_token
    )


@http(
    bp,
    "resellers",
    ["POST"],
    name="http_onboard_reseller",
    summary="Onboard a reseller Partner Center knows (default mark-up 10 % over its cost).",
    body=ResellerCreate,
    response=ResellerDistributor,
    status=201,
    tags=TAGS,
    errors=(409, 502, 503),
    access=allow(Action.MANAGE_RESELLERS),
    idempotent=True,
)
def onboard_reseller(call: Call) -> Reply:
    """Create a reseller."""
    c = container()
    reseller = resellers.onboard(c.resellers, c.clock, call.body(ResellerCreate), c.partner_center)
    return Reply(
        resellers.present(call.principal, reseller),
        status=201,
        etag=reseller.etag,
        headers={"Location": f"/api/resellers/{reseller.slug}"},
    )


@http(
    bp,
    "resellers/{r}",
    ["GET"],
    name="http_get_reseller",
    summary="One reseller (its staff see no distributor mark-up; customers' users no mark-up).",
    response=ResellerDistributor | ResellerStaff | ResellerPublic,
    tags=TAGS,
    access=allow(Action.READ_RESELLER),
)
def get_reseller(call: Call) -> Reply:
    """One reseller, with its ETag."""
    reseller = resellers.get(container().resellers, call.route["r"])
    return Reply(resellers.present(call.principal, reseller), etag=reseller.etag)


@http(
    bp,
    "resellers/{r}",
    ["PATCH"],
    name="http_update_reseller",
    summary="Change a reseller's profile and mark-ups (If-Match; no currency or market change "
    "while catalog entries hold prices: 409).",
    body=ResellerUpdate,
    response=ResellerDistributor,
    tags=TAGS,
    errors=(409, 412, 428, 502, 503),
    access=allow(Action.MANAGE_RESELLERS),
)
def update_reseller(call: Call) -> Reply:
    """Change the fields given."""
    c = container()
    etag = call.if_match()
    command = call.body(ResellerUpdate)
    reseller = resellers.update(
        c.resellers, c.clock, call.route["r"], etag, command, c.catalog_store, c.partner_center
    )
    return Reply(resellers.present(call.principal, reseller), etag=reseller.etag)

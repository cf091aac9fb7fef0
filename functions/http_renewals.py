"""Renewals: the reseller's subscriptions renewing soon, across its customers."""

from __future__ import annotations

import azure.functions as func
from pydantic import ConfigDict, Field

from functions._http import Call, PageQuery, http
from shared.bootstrap import container
from shared.domain.model import Page
from shared.services import renewals
from shared.services.access import Action, allow
from shared.services.renewals import RenewalPublic, RenewalStaff

bp = func.Blueprint()


class RenewalQuery(PageQuery):
    """How far ahead to look (an unknown parameter is a 400, not silently ignored)."""

    model_config = ConfigDict(extra="forbid")

    within: int = Field(
        renewals.DEFAULT_WITHIN,
        ge=1,
        le=renewals.MAX_WITHIN,
        description="Days ahead (1-365): subscriptions whose anniversary is today or before then.",
    )


@http(
    bp,
    "resellers/{r}/renewals",
    ["GET"],
    name="http_list_renewals",
    summary="Subscriptions renewing (or expiring: auto-renew off) soon, soonest first, "
    "with what changes at renewal.",
    query=RenewalQuery,
    response=Page[RenewalStaff | RenewalPublic],
    tags=("subscriptions",),
    errors=(400,),
    access=allow(Action.READ_SUBSCRIPTIONS),
)
def list_renewals(call: Call) -> Page[RenewalStaff | RenewalPublic]:
    """A page of renewals."""
    q = call.query(RenewalQuery)
    return renewals.list_renewals(
        container().order_book,
        call.principal,
        call.route["r"],
        within=q.within,
        page_size=q.page_size,
        continuation_token=q.continuation_token,
    )

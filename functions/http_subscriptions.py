"""Subscriptions: the customer's list, one (refreshed from Partner Center), and changes, each
answered 202 with its Change order (Location)."""

from __future__ import annotations

import azure.functions as func

from functions._http import Call, PageQuery, Reply, http
from shared.bootstrap import container
from shared.domain.model import Page
from shared.domain.orders import Order
from shared.services import orders
from shared.services.access import Action, allow
from shared.services.attribution import names_for
from shared.services.orders import OrderPublic, OrderStaff
from shared.services.subscriptions import reading, requests
from shared.services.subscriptions.requests import (
    ConvertRequest,
    NextTermRequest,
    SubscriptionPatch,
    UpgradeRequest,
)
from shared.services.subscriptions.views import (
    SubscriptionPublic,
    SubscriptionStaff,
    present_subscription,
)

bp = func.Blueprint()
TAGS = ("subscriptions",)
SUBSCRIPTION = "resellers/{r}/customers/{c}/subscriptions/{s}"
# What every change may answer besides 202: a bad body, a rule (409), If-Match.
CHANGE_ERRORS = (400, 409, 412, 428)


def _accepted(call: Call, order: Order) -> Reply:
    """202 with the Change order (its warnings say what else the change does) and its Location."""
    path = f"/api/resellers/{order.reseller}/customers/{order.customer_id}/orders/{order.id}"
    return Reply(
        orders.present(
            call.principal,
            order,
            names_for(container().order_book, call.principal, order.reseller, order.customer_id),
        ),
        status=202,
        headers={"Location": path},
        etag=order.etag,
    )


def _where(call: Call) -> tuple[str, str, str]:
    r = call.route
    return r["r"], r["c"], r["s"]


@http(
    bp,
    "resellers/{r}/customers/{c}/subscriptions",
    ["GET"],
    name="http_list_subscriptions",
    summary="The customer's subscriptions as the platform records them.",
    query=PageQuery,
    response=Page[SubscriptionStaff | SubscriptionPublic],
    tags=TAGS,
    errors=(400,),
    access=allow(Action.READ_SUBSCRIPTIONS),
)
def list_subscriptions(call: Call) -> Page[SubscriptionStaff | SubscriptionPublic]:
    """A page of subscriptions."""
    q = call.query(PageQuery)
    return reading.list_subscriptions(
        container().order_book,
        call.principal,
        call.route["r"],
        call.route["c"],
        page_size=q.page_size,
        continuation_token=q.continuation_token,
    )


@http(
    bp,
    SUBSCRIPTION,
    ["GET"],
    name="http_get_subscription",
    summary="One subscription (with its ETag), refreshed from Partner Center when not fresh.",
    response=SubscriptionStaff | SubscriptionPublic,
    tags=TAGS,
    access=allow(Action.READ_SUBSCRIPTIONS),
)
def get_subscription(call: Call) -> Reply:
    """The subscription."""
    c = container()
    sub = reading.get_subscription(c.order_book, c.partner_center, call.principal, *_where(call))
    names = names_for(c.order_book, call.principal, sub.reseller, sub.customer_id)
    return Reply(present_subscription(call.principal, sub, names), etag=sub.etag)


@http(
    bp,
    SUBSCRIPTION,
    ["PATCH"],
    name="http_change_subscription",
    summary="Change quantity, billing cycle, term, auto-renew or status (If-Match): 202 with "
    "the Change order.",
    body=SubscriptionPatch,
    response=OrderStaff | OrderPublic,
    status=202,
    tags=TAGS,
    errors=CHANGE_ERRORS,
    access=allow(Action.CHANGE_SUBSCRIPTIONS),
)
def change_subscription(call: Call) -> Reply:
    """The Change order."""
    c = container()
    etag = call.if_match()
    body = call.body(SubscriptionPatch)
    order = requests.request_update(
        c.order_book, c.partner_center, call.principal, *_where(call), etag, body
    )
    return _accepted(call, order)


@http(
    bp,
    SUBSCRIPTION + "/convert",
    ["POST"],
    name="http_convert_subscription",
    summary="Convert a trial to paid (If-Match optional; Idempotency-Key honoured): 202 with "
    "the Change order.",
    body=ConvertRequest,
    response=OrderStaff | OrderPublic,
    status=202,
    tags=TAGS,
    errors=(400, 409, 412),
    access=allow(Action.CHANGE_SUBSCRIPTIONS),
    idempotent=True,
)
def convert_subscription(call: Call) -> Reply:
    """The Change order."""
    c = container()
    etag = call.if_match_optional()
    body = call.body(ConvertRequest) if call.req.get_body() else ConvertRequest()
    order = requests.request_conversion(
        c.order_book, c.partner_center, call.principal, *_where(call), etag, body
    )
    return _accepted(call, order)


@http(
    bp,
    SUBSCRIPTION + "/upgrade",
    ["POST"],
    name="http_upgrade_subscription",
    summary="Upgrade seats to an eligible SKU (If-Match optional; Idempotency-Key honoured): "
    "202 with the Change order.",
    body=UpgradeRequest,
    response=OrderStaff | OrderPublic,
    status=202,
    tags=TAGS,
    errors=(400, 409, 412),
    access=allow(Action.CHANGE_SUBSCRIPTIONS),
    idempotent=True,
)
def upgrade_subscription(call: Call) -> Reply:
    """The Change order."""
    c = container()
    etag = call.if_match_optional()
    body = call.body(UpgradeRequest)
    order = requests.request_upgrade(
        c.order_book, c.partner_center, call.principal, *_where(call), etag, body
    )
    return _accepted(call, order)


@http(
    bp,
    SUBSCRIPTION + "/next-term",
    ["PUT"],
    name="http_schedule_subscription_change",
    summary="Schedule a change for renewal (If-Match; needs auto-renew on): 202 with the "
    "Change order.",
    body=NextTermRequest,
    response=OrderStaff | OrderPublic,
    status=202,
    tags=TAGS,
    errors=CHANGE_ERRORS,
    access=allow(Action.CHANGE_SUBSCRIPTIONS),
)
def schedule_subscription_change(call: Call) -> Reply:
    """The Change order."""
    c = container()
    etag = call.if_match()
    body = call.body(NextTermRequest)
    order = requests.request_schedule(
        c.order_book, c.partner_center, call.principal, *_where(call), etag, body
    )
    return _accepted(call, order)


@http(
    bp,
    SUBSCRIPTION + "/next-term",
    ["DELETE"],
    name="http_unschedule_subscription_change",
    summary="Remove the change scheduled for renewal (If-Match): 202 with the Change order.",
    response=OrderStaff | OrderPublic,
    status=202,
    tags=TAGS,
    errors=(409, 412, 428),
    access=allow(Action.CHANGE_SUBSCRIPTIONS),
)
def unschedule_subscription_change(call: Call) -> Reply:
    """The Change order."""
    etag = call.if_match()
    order = requests.request_unschedule(container().order_book, call.principal, *_where(call), etag)
    return _accepted(call, order)

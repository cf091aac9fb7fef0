"""Orders: preview, drafts, submit, approve / reject, retry."""

from __future__ import annotations

import re
from typing import Literal

import azure.functions as func
from pydantic import ConfigDict, Field

from functions._http import Call, PageQuery, Reply, http
from shared.bootstrap import container
from shared.domain.errors import FieldError, ValidationFailed
from shared.domain.model import Page
from shared.domain.orders import Order, OrderCreate, OrderDecision, OrderStatus, OrderUpdate
from shared.services import orders
from shared.services.access import Action, allow
from shared.services.attribution import names_for
from shared.services.orders import (
    OrderPreviewPublic,
    OrderPreviewStaff,
    OrderPublic,
    OrderStaff,
)

bp = func.Blueprint()
TAGS = ("orders",)
ORDER = "resellers/{r}/customers/{c}/orders/{o}"
_INDEX = re.compile(r"\.(\d+)(?=\.|$)")


class OrderListQuery(PageQuery):
    """Filters of an order list (an unknown parameter is a 400, not silently ignored)."""

    model_config = ConfigDict(extra="forbid")

    status: (
        Literal[
            "Draft",
            "PendingApproval",
            "Submitted",
            "Provisioning",
            "Completed",
            "CompletedWithErrors",
            "Failed",
            "Cancelled",
        ]
        | None
    ) = Field(None, description="Only orders in this status.")


def _lines(call: Call, model: type[OrderCreate]) -> OrderCreate:
    """The body, with list positions named like `lines[2].quantity`."""
    try:
        return call.body(model)
    except ValidationFailed as exc:
        raise ValidationFailed(
            [FieldError(_INDEX.sub(r"[\1]", e.field), e.message) for e in exc.errors]
        ) from exc


def _location(order: Order) -> dict[str, str]:
    path = f"/api/resellers/{order.reseller}/customers/{order.customer_id}/orders/{order.id}"
    return {"Location": path}


def _reply(call: Call, order: Order, status: int = 200, location: bool = False) -> Reply:
    return Reply(
        orders.present(
            call.principal,
            order,
            names_for(container().order_book, call.principal, order.reseller, order.customer_id),
        ),
        status=status,
        headers=_location(order) if location else {},
        etag=order.etag,
    )


def _list(call: Call, customer: str | None) -> Page[OrderStaff | OrderPublic]:
    q = call.query(OrderListQuery)
    return orders.list_orders(
        container().order_book,
        call.principal,
        call.route["r"],
        customer,
        status=OrderStatus(q.status) if q.status else None,
        page_size=q.page_size,
        continuation_token=q.continuation_token,
    )


@http(
    bp,
    "resellers/{r}/customers/{c}/orders/preview",
    ["POST"],
    name="http_preview_order",
    summary="Price order lines with every layer the caller may see, without storing anything.",
    body=OrderCreate,
    response=OrderPreviewStaff | OrderPreviewPublic,
    tags=TAGS,
    errors=(400, 409),
    access=allow(Action.PLACE_ORDERS),
)
def preview_order(call: Call) -> OrderPreviewStaff | OrderPreviewPublic:
    """Validated, priced lines."""
    return orders.preview(
        container().order_book,
        call.principal,
        call.route["r"],
        call.route["c"],
        _lines(call, OrderCreate),
    )


@http(
    bp,
    "resellers/{r}/customers/{c}/orders",
    ["POST"],
    name="http_create_order",
    summary="Save an order as a Draft (validated and priced; Idempotency-Key honoured).",
    body=OrderCreate,
    response=OrderStaff | OrderPublic,
    status=201,
    tags=TAGS,
    errors=(400, 409),
    access=allow(Action.PLACE_ORDERS),
    idempotent=True,
)
def create_order(call: Call) -> Reply:
    """A new Draft."""
    order = orders.create(
        container().order_book,
        call.principal,
        call.route["r"],
        call.route["c"],
        _lines(call, OrderCreate),
    )
    return _reply(call, order, 201, location=True)


@http(
    bp,
    "resellers/{r}/customers/{c}/orders",
    ["GET"],
    name="http_list_customer_orders",
    summary="The customer's orders, drafts included, newest first.",
    query=OrderListQuery,
    response=Page[OrderStaff | OrderPublic],
    tags=TAGS,
    errors=(400,),
    access=allow(Action.READ_ORDERS),
)
def list_customer_orders(call: Call) -> Page[OrderStaff | OrderPublic]:
    """A page of one customer's orders."""
    return _list(call, call.route["c"])


@http(
    bp,
    "resellers/{r}/orders",
    ["GET"],
    name="http_list_reseller_orders",
    summary="Every customer's orders, newest first (a customer user: its own).",
    query=OrderListQuery,
    response=Page[OrderStaff | OrderPublic],
    tags=TAGS,
    errors=(400,),
    access=allow(Action.READ_ORDERS),
)
def list_reseller_orders(call: Call) -> Page[OrderStaff | OrderPublic]:
    """A page of the reseller's orders."""
    return _list(call, None)


@http(
    bp,
    ORDER,
    ["GET"],
    name="http_get_order",
    summary="One order (with its ETag).",
    response=OrderStaff | OrderPublic,
    tags=TAGS,
    access=allow(Action.READ_ORDERS),
)
def get_order(call: Call) -> Reply:
    """The order."""
    r = call.route
    return _reply(call, orders.get(container().order_book, call.principal, r["r"], r["c"], r["o"]))


@http(
    bp,
    ORDER,
    ["PATCH"],
    name="http_update_order",
    summary="Replace a Draft's lines (If-Match; 409 unless Draft).",
    body=OrderUpdate,
    response=OrderStaff | OrderPublic,
    tags=TAGS,
    errors=(400, 409, 412, 428),
    access=allow(Action.PLACE_ORDERS),
)
def update_order(call: Call) -> Reply:
    """The changed Draft."""
    r = call.route
    etag = call.if_match()
    order = orders.update(
        container().order_book,
        call.principal,
        r["r"],
        r["c"],
        r["o"],
        etag,
        _lines(call, OrderUpdate),
    )
    return _reply(call, order)


@http(
    bp,
    ORDER,
    ["DELETE"],
    name="http_delete_order",
    summary="Delete a Draft (If-Match; 409 unless Draft).",
    status=204,
    tags=TAGS,
    errors=(409, 412, 428),
    access=allow(Action.PLACE_ORDERS),
)
def delete_order(call: Call) -> Reply:
    """Nothing (204)."""
    r = call.route
    etag = call.if_match()
    orders.delete(container().order_book, call.principal, r["r"], r["c"], r["o"], etag)
    return Reply(status=204)


@http(
    bp,
    ORDER + "/submit",
    ["POST"],
    name="http_submit_order",
    summary="Place a Draft (If-Match): Submitted, or PendingApproval where approval is needed.",
    response=OrderStaff | OrderPublic,
    status=202,
    tags=TAGS,
    errors=(409, 412, 428),
    access=allow(Action.PLACE_ORDERS),
)
def submit_order(call: Call) -> Reply:
    """The submitted order (202: provisioning runs in the background)."""
    r = call.route
    etag = call.if_match()
    order = orders.submit(container().order_book, call.principal, r["r"], r["c"], r["o"], etag)
    return _reply(call, order, 202, location=True)


@http(
    bp,
    ORDER + "/approve",
    ["POST"],
    name="http_approve_order",
    summary="Approve an order waiting for approval (If-Match): Submitted.",
    body=OrderDecision,
    response=OrderStaff | OrderPublic,
    status=202,
    tags=TAGS,
    errors=(400, 409, 412, 428),
    access=allow(Action.APPROVE_ORDERS),
)
def approve_order(call: Call) -> Reply:
    """The approved order."""
    r = call.route
    etag = call.if_match()
    decision = call.body(OrderDecision) if call.req.get_body() else OrderDecision()
    order = orders.approve(
        container().order_book, call.principal, r["r"], r["c"], r["o"], etag, decision
    )
    return _reply(call, order, 202, location=True)


@http(
    bp,
    ORDER + "/reject",
    ["POST"],
    name="http_reject_order",
    summary="Reject an order waiting for approval (If-Match): Cancelled, with the reason.",
    body=OrderDecision,
    response=OrderStaff | OrderPublic,
    tags=TAGS,
    errors=(400, 409, 412, 428),
    access=allow(Action.APPROVE_ORDERS),
)
def reject_order(call: Call) -> Reply:
    """The cancelled order."""
    r = call.route
    etag = call.if_match()
    decision = call.body(OrderDecision) if call.req.get_body() else OrderDecision()
    order = orders.reject(
        container().order_book, call.principal, r["r"], r["c"], r["o"], etag, decision
    )
    return _reply(call, order)


@http(
    bp,
    ORDER + "/retry",
    ["POST"],
    name="http_retry_order",
    summary="Place a Failed order again (If-Match optional): Submitted.",
    response=OrderStaff | OrderPublic,
    status=202,
    tags=TAGS,
    errors=(409, 412),
    access=allow(Action.MANAGE_ORDERS),
)
def retry_order(call: Call) -> Reply:
    """The resubmitted order."""
    r = call.route
    order = orders.retry(
        container().order_book,
        call.principal,
        r["r"],
        r["c"],
        r["o"],
        call.if_match_optional(),
    )
    return _reply(call, order, 202, location=True)

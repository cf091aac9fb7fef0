"""Customers: create (new tenant), import (existing tenant), list, read, change, retry; names."""

from __future__ import annotations

from typing import Literal

import azure.functions as func
from pydantic import Field

from functions._http import Call, PageQuery, Reply, http
from shared.bootstrap import container
from shared.domain.customers import (
    Customer,
    CustomerCreate,
    CustomerImport,
    CustomerStatus,
    CustomerUpdate,
)
from shared.domain.model import Page
from shared.services import customers
from shared.services.access import Action, allow
from shared.services.customers import CustomerPublic, CustomerView, DomainCheck, RelationshipLink

bp = func.Blueprint()
TAGS = ("customers",)


class CustomerListQuery(PageQuery):
    """Filters of the customer list."""

    # A Literal (not the enum) keeps the OpenAPI query parameter self-contained.
    status: Literal["Provisioning", "Active", "Failed"] | None = Field(
        None, description="Provisioning, Active or Failed."
    )
    name: str | None = Field(
        None, min_length=1, max_length=100, description="Part of the name (any case)."
    )


def _location(customer: Customer) -> dict[str, str]:
    return {"Location": f"/api/resellers/{customer.reseller}/customers/{customer.id}"}


@http(
    bp,
    "resellers/{r}/customers",
    ["GET"],
    name="http_list_customers",
    summary="The reseller's customers (a customer user: its own), by status and name.",
    query=CustomerListQuery,
    response=Page[CustomerView | CustomerPublic],
    tags=TAGS,
    errors=(400,),
    access=allow(Action.READ_CUSTOMERS),
)
def list_customers(call: Call) -> Page[CustomerView | CustomerPublic]:
    """A page of customers."""
    q = call.query(CustomerListQuery)
    return customers.list_customers(
        container().customer_book,
        call.principal,
        call.route["r"],
        status=CustomerStatus(q.status) if q.status else None,
        name=q.name,
        page_size=q.page_size,
        continuation_token=q.continuation_token,
    )


@http(
    bp,
    "resellers/{r}/customers",
    ["POST"],
    name="http_create_customer",
    summary="Create a customer with a new Microsoft tenant; provisioned in the background.",
    body=CustomerCreate,
    response=CustomerView,
    status=202,
    tags=TAGS,
    errors=(400, 409, 503),
    access=allow(Action.MANAGE_CUSTOMERS),
    idempotent=True,
)
def create_customer(call: Call) -> Reply:
    """Check the tenant name, store the customer (Provisioning), queue its provisioning."""
    c = container()
    customer = customers.create(
        c.customer_book,
        c.partner_center,
        call.principal,
        call.route["r"],
        call.body(CustomerCreate),
        customer_id=call.new_id(),
    )
    return Reply(
        customers.present(call.principal, customer),
        status=202,
        headers=_location(customer),
        etag=customer.etag,
    )


@http(
    bp,
    "resellers/{r}/customers/import",
    ["POST"],
    name="http_import_customer",
    summary="Import one existing tenant that accepted the reseller, by domain or tenant id.",
    body=CustomerImport,
    response=CustomerView,
    status=201,
    tags=TAGS,
    errors=(400, 409, 503),
    access=allow(Action.MANAGE_CUSTOMERS),
    idempotent=True,
)
def import_customer(call: Call) -> Reply:
    """Find the tenant among the reseller's in Partner Center and record it Active."""
    c = container()
    customer = customers.import_existing(
        c.customer_book,
        c.partner_center,
        call.principal,
        call.route["r"],
        call.body(CustomerImport),
        customer_id=call.new_id(),
    )
    return Reply(
        customers.present(call.principal, customer),
        status=201,
        headers=_location(customer),
        etag=customer.etag,
    )


@http(
    bp,
    "resellers/{r}/customers/{c}",
    ["GET"],
    name="http_get_customer",
    summary="One customer (with its ETag).",
    response=CustomerView | CustomerPublic,
    tags=TAGS,
    access=allow(Action.READ_CUSTOMERS),
)
def get_customer(call: Call) -> Reply:
    """The customer."""
    customer = customers.get(
        container().customer_book, call.principal, call.route["r"], call.route["c"]
    )
    return Reply(customers.present(call.principal, customer), etag=customer.etag)


@http(
    bp,
    "resellers/{r}/customers/{c}",
    ["PATCH"],
    name="http_update_customer",
    summary="Change industry, segment, contact or address (If-Match required).",
    body=CustomerUpdate,
    response=CustomerView,
    tags=TAGS,
    errors=(400, 409, 412, 428),
    access=allow(Action.MANAGE_CUSTOMERS),
)
def update_customer(call: Call) -> Reply:
    """Change the customer if it is still at the ETag."""
    etag = call.if_match()
    customer = customers.update(
        container().customer_book,
        call.principal,
        call.route["r"],
        call.route["c"],
        etag,
        call.body(CustomerUpdate),
    )
    return Reply(customers.present(call.principal, customer), etag=customer.etag)


@http(
    bp,
    "resellers/{r}/customers/{c}/retry",
    ["POST"],
    name="http_retry_customer",
    summary=(
        "Provision a Failed (or stale Provisioning) new-tenant customer again: the same "
        "MS-RequestId after a transient failure, a new one after a refusal."
    ),
    response=CustomerView,
    status=202,
    tags=TAGS,
    errors=(409, 412),
    access=allow(Action.MANAGE_CUSTOMERS),
    idempotent=True,
)
def retry_customer(call: Call) -> Reply:
    """Back to Provisioning with its `provision-customer` message (If-Match optional)."""
    customer = customers.retry(
        container().customer_book,
        call.principal,
        call.route["r"],
        call.route["c"],
        call.if_match_optional(),
    )
    return Reply(
        customers.present(call.principal, customer),
        status=202,
        headers=_location(customer),
        etag=customer.etag,
    )


@http(
    bp,
    "resellers/{r}/domains/{name}",
    ["GET"],
    name="http_check_domain",
    summary="Whether <name>.onmicrosoft.com is still free for a new tenant.",
    response=DomainCheck,
    tags=TAGS,
    errors=(400, 503),
    access=allow(Action.MANAGE_CUSTOMERS),
)
def check_domain(call: Call) -> DomainCheck:
    """Ask Partner Center (and our own customers being provisioned)."""
    c = container()
    return customers.check_domain(
        c.customer_book, c.partner_center, call.route["r"], call.route["name"]
    )


@http(
    bp,
    "resellers/{r}/relationship-link",
    ["GET"],
    name="http_relationship_link",
    summary="The link an existing tenant's admin opens to accept the reseller.",
    response=RelationshipLink,
    tags=TAGS,
    errors=(503,),
    access=allow(Action.MANAGE_CUSTOMERS),
)
def relationship_link(call: Call) -> RelationshipLink:
    """The reseller's relationship request link."""
    c = container()
    return customers.relationship_link(c.customer_book, c.partner_center, call.route["r"])

"""Customers: create (new tenant, provisioned through `provision-customer`), import an existing
tenant, list, read, change, retry a Failed one; the provisioning step itself.

The first admin's password: Partner Center returns it once, in the answer to the create call.
The step sends it straight from that answer to the contact (and, in copy, the reseller user who
asked for the tenant; never the support address or other notification recipients) through the
mailer, *before* it marks the customer Active, and never puts it in a record (not even a
Notifications row), a queue message or a log line. An answer without sign-in details queues the
"reset the admin's password" e-mail instead, so the customer never goes Active silently.
A redelivered message for a customer still Provisioning repeats the create with the customer's
stored MS-RequestId, which Partner Center answers with its first result (the same tenant, the
same password), so a crash anywhere in the step re-sends the same e-mail at worst (the drop
folder and the Message-ID make it the same message); once Active, a redelivery does nothing.

A create refused because the domain is taken, where the tenant is among the reseller's own in
Partner Center (and no other record of ours holds it), is the tenant of an earlier attempt whose
answer was lost: the step adopts it (Active) and, as no sign-in can be recovered, queues an
e-mail asking the requester and the reseller to reset the admin's password instead.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, Field

from shared.domain.claims import Claim
from shared.domain.customers import (
    DEFAULT_SEGMENT,
    FAILED_FOR_CUSTOMER_USERS,
    Address,
    AdminSignIn,
    Contact,
    Customer,
    CustomerCreate,
    CustomerImport,
    CustomerOrigin,
    CustomerStatus,
    CustomerUpdate,
    ProvisionCustomerMessage,
    Qualification,
    Tenant,
    TenantRequest,
    default_locale,
    is_tenant_name,
    is_valid_ico,
    tenant_domain,
)
from shared.domain.errors import (
    ClaimTaken,
    ConcurrencyConflict,
    Conflict,
    ConflictingFields,
    FieldError,
    Forbidden,
    NotFound,
    UpstreamRejected,
    ValidationFailed,
)
from shared.domain.failures import Failure, FailureKind
from shared.domain.identity import (
    CUSTOMER_ID_PATTERN,
    NotificationEvent,
    Principal,
    Reseller,
    User,
)
from shared.domain.model import Page, WireModel, expected_version
from shared.domain.notifications import Email, Notification
from shared.domain.outbox import OutboxMessage, Queue
from shared.ports import CatalogStore, Clock, Mailer, PartnerCenter, Repository
from shared.services import access, notifications, resellers
from shared.services.watchdog import InFlight

log = logging.getLogger(__name__)

_CUSTOMER_ID = re.compile(CUSTOMER_ID_PATTERN)
# The catalog's own four; a reseller may add more (read from its catalog when one is wired).
_BUILTIN_SEGMENTS = frozenset({"commercial", "education", "government", "nonprofit"})
_MAX_SCAN_PAGES = 20
# Partner Center's error code for a create whose domain already exists.
_DOMAIN_TAKEN_CODE = "600041"


@dataclass
class CustomerBook:
    """The records the customer services work on."""

    customers: Repository[Customer]
    resellers: Repository[Reseller]
    clock: Clock
    catalog: CatalogStore | None = None
    # Where the e-mail about an adopted tenant is queued (the notifications outbox).
    notifications: Repository[Notification] | None = None
    # A Provisioning older than this is stale: the watchdog acts on it and `retry` accepts it.
    stuck_after: timedelta = timedelta(minutes=30)
    # Whose Account Managers hear of events (notifications.recipients).
    users: Repository[User] | None = None


class DomainCheck(WireModel):
    """Whether `<name>.onmicrosoft.com` can still be had."""

    name: str
    domain: str
    available: bool


class RelationshipLink(WireModel):
    """The link an existing tenant's admin opens to accept the reseller."""

    url: str


class CustomerPublic(WireModel):
    """A customer as its own users see it: a failure explained in words, not upstream text."""

    id: str
    reseller: str
    name: str
    company_id: str | None
    address: Address
    contact: Contact
    domain: str
    tenant_id: str | None
    industry: str | None
    segment: str
    language: str | None
    culture: str | None
    status: CustomerStatus
    origin: CustomerOrigin
    failure_reason: str | None = Field(
        description="Why provisioning failed: a sentence for the customer's users, or for staff "
        "the reason as recorded (Partner Center's or storage's own words)."
    )
    failure_kind: FailureKind | None = None
    subscription_count: int
    created_at: AwareDatetime
    updated_at: AwareDatetime


class CustomerView(CustomerPublic):
    """A customer as reseller staff and the distributor see it (no cost fields exist on one).

    The fields of `CustomerPublic` (`failureReason` holds the recorded reason verbatim) and
    `unassociatedSince`. A customer's own users do not get that flag: whether Partner Center
    still lists the tenant as the reseller's is the reseller's business; they learn it from
    the 409 an order or a change gets.
    """

    unassociated_since: AwareDatetime | None = Field(
        None,
        description="Since when Partner Center no longer lists the tenant as this reseller's "
        "(flagged by the sync, never deleted): orders and subscription changes are refused.",
    )
    qualification: Qualification = Field(
        Qualification.NONE,
        description="Microsoft's verification of an education, government or nonprofit "
        "segment, as the sync last read it.",
    )


class CustomerListQuery(WireModel):
    """Filters of the customer list, with paging."""

    status: CustomerStatus | None = None
    name: str | None = None
    page_size: int = 50
    continuation_token: str | None = None


def present(principal: Principal | None, customer: Customer) -> CustomerView | CustomerPublic:
    """The view of `customer` the caller may see.

    Staff get the failure reason as recorded (they act on it; logs keep it too); a customer's
    users get a sentence for people instead of Partner Center's or storage's raw text.
    """
    if principal is None or not principal.is_customer_user:
        return CustomerView.model_validate(customer, from_attributes=True)
    public = CustomerPublic.model_validate(customer, from_attributes=True)
    if customer.failure_reason is not None:
        public.failure_reason = FAILED_FOR_CUSTOMER_USERS
    return public


# --- reading ---------------------------------------------------------------------------------


def get(book: CustomerBook, principal: Principal, reseller: str, customer_id: str) -> Customer:
    """One customer inside the caller's world (NotFound otherwise, also for odd ids)."""
    resellers.get(book.resellers, reseller)
    access.ensure_visible(principal, reseller, customer_id)
    found = book.customers.find(reseller, customer_id) if _CUSTOMER_ID.match(customer_id) else None
    if found is None:
        raise NotFound("customer not found")
    return found


def list_customers(
    book: CustomerBook,
    principal: Principal,
    reseller: str,
    *,
    status: CustomerStatus | None = None,
    name: str | None = None,
    page_size: int = 50,
    continuation_token: str | None = None,
) -> Page[CustomerView | CustomerPublic]:
    """A page of the reseller's customers (a customer user: its own), filtered.

    The name filter matches anywhere in the name, case-insensitively; as Table Storage cannot,
    pages are read until one is full or the partition ends (at most a bounded number of reads),
    so a page may hold fewer items than asked while `continuationToken` still leads on.
    """
    resellers.get(book.resellers, reseller)
    needle = name.strip().lower() if name else ""
    if principal.is_customer_user:
        own = book.customers.find(reseller, principal.customer_id or "")
        mine = [
            c
            for c in ([own] if own is not None else [])
            if (status is None or c.status is status) and needle in c.search_name
        ]
        return Page[CustomerView | CustomerPublic](items=[present(principal, c) for c in mine])
    equals: dict[str, Any] = {}
    if status is not None:
        equals["status"] = status
    items: list[Customer] = []
    token = continuation_token
    for _ in range(_MAX_SCAN_PAGES):
        page = book.customers.list(
            reseller,
            equals=equals or None,
            page_size=page_size - len(items),
            continuation_token=token,
        )
        items += [c for c in page.items if needle in c.search_name]
        token = page.continuation_token
        if token is None or len(items) >= page_size or not needle:
            break
    return Page[CustomerView | CustomerPublic](
        items=[present(principal, c) for c in items], continuation_token=token
    )


# --- creating a new tenant -------------------------------------------------------------------


def _check_segment(book: CustomerBook, reseller: str, segment: str, field: str) -> None:
    known = set(_BUILTIN_SEGMENTS)
    if book.catalog is not None:
        settings = book.catalog.find_settings(reseller)
        if settings is not None:
            known |= {s.id for s in settings.segments}
    if segment not in known:
        raise ValidationFailed([FieldError(field, f"{segment!r} is not a segment of the catalog")])


def check_domain(
    book: CustomerBook, partner_center: PartnerCenter, reseller: str, name: str
) -> DomainCheck:
    """Whether `<name>.onmicrosoft.com` is free: at Microsoft and among our own new customers."""
    resellers.get(book.resellers, reseller)
    if not is_tenant_name(name):
        raise ValidationFailed(
            [FieldError("name", "letters and digits only, 1-27 characters, without the suffix")]
        )
    domain = tenant_domain(name)
    available = _claimed_here(book, reseller, domain) is None and (
        partner_center.is_domain_available(domain)
    )
    return DomainCheck(name=name.lower(), domain=domain, available=available)


def _claimed_here(book: CustomerBook, reseller: str, domain: str) -> str | None:
    # Microsoft answers "free" until the tenant exists; a customer of ours still Provisioning
    # (or Failed, waiting for its retry) has already claimed it.
    return book.customers.claim_owner(reseller, Claim("domain", domain))


def _taken_name(domain: str, holder: str | None = None) -> ConflictingFields:
    by = f" by the customer {holder}" if holder else ""
    return ConflictingFields(
        [FieldError("tenantName", f"{domain} is already taken{by}; choose another name")]
    )


def create(
    book: CustomerBook,
    partner_center: PartnerCenter,
    principal: Principal,
    reseller_slug: str,
    command: CustomerCreate,
    customer_id: str | None = None,
) -> Customer:
    """Store the customer (Provisioning) and its `provision-customer` message, atomically.

    The tenant name is checked with Partner Center first: a taken name stores nothing.
    `customer_id` (the Idempotency-Key's reserved id): when it exists, it is returned as is.
    """
    reseller = resellers.get(book.resellers, reseller_slug)
    if principal.is_customer_user:
        raise Forbidden("a customer's user cannot create customers")
    if (earlier := _created_earlier(book, reseller.slug, customer_id)) is not None:
        return earlier
    reseller.require_tenant_id()
    _check_segment(book, reseller.slug, command.segment, "segment")
    domain = tenant_domain(command.tenant_name)
    holder = _claimed_here(book, reseller.slug, domain)
    if holder is not None or not partner_center.is_domain_available(domain):
        raise _taken_name(domain, holder)
    language, culture = default_locale(command.address.country)
    now = book.clock.now()
    customer = Customer(
        reseller=reseller.slug,
        name=command.name,
        company_id=command.company_id,
        address=Address(**command.address.model_dump()),
        contact=Contact(**command.contact.model_dump(mode="json")),
        domain=domain,
        industry=command.industry,
        segment=command.segment,
        language=command.language or language,
        culture=command.culture or culture,
        created_by=principal.email,
        created_at=now,
        updated_at=now,
        status_since=now,
    )
    if customer_id is not None:
        customer.id = customer_id
    # The domain's claim row commits with the record: of two racing creates, one wins.
    try:
        return book.customers.add(
            customer, messages=[_provision_message(customer)], claims=customer.claims()
        )
    except ClaimTaken as exc:
        raise _taken_name(domain, exc.owner) from exc


def _provision_message(customer: Customer) -> OutboxMessage:
    return OutboxMessage(
        queue=Queue.PROVISION_CUSTOMER,
        body={"reseller": customer.reseller, "customerId": customer.id},
    )


def _created_earlier(book: CustomerBook, reseller: str, customer_id: str | None) -> Customer | None:
    # A repeat of a request whose first run died after committing (see services/idempotency).
    return book.customers.find(reseller, customer_id) if customer_id is not None else None


def _tenant_request(customer: Customer, reseller: Reseller) -> TenantRequest:
    return TenantRequest(
        domain=customer.domain,
        company_name=customer.name,
        registration_number=customer.company_id,
        contact=customer.contact,
        address=customer.address,
        culture=customer.culture,
        language=customer.language,
        reseller_tenant_id=reseller.require_tenant_id(),
    )


def welcome_email_id(customer: Customer) -> str:
    """The e-mail's fixed id: a re-send after a crash is the same message, not a second one."""
    return f"customer-{customer.id}-welcome"


def _welcome_email(customer: Customer, reseller: Reseller, creds: AdminSignIn) -> Email:
    """The first admin's sign-in: to the customer's contact and, in copy, the reseller user who
    asked for the tenant, and no one else (not the support address, not the extra recipients of
    notifications: a password goes only to the people who need it)."""
    brand = reseller.settings.appearance.display_name
    assert customer.contact.email is not None
    contact = customer.contact.email.lower()
    requester = (customer.created_by or "").lower()
    return Email(
        to=[customer.contact.email],
        cc=[requester] if requester and requester != contact else [],
        subject=f"Your Microsoft tenant {customer.domain} is ready",
        text=(
            f"Hello {customer.contact.first_name or ''},\n\n"
            f"{brand} has created the Microsoft tenant of {customer.name}.\n\n"
            f"Sign in at https://portal.office.com with\n"
            f"  user name: {creds.user_name}\n"
            f"  temporary password: {creds.password}\n\n"
            "You will be asked to choose a new password at the first sign-in.\n"
            "Keep this e-mail private and delete it once you have signed in.\n"
        ),
    )


def provision(
    book: CustomerBook,
    partner_center: PartnerCenter,
    mailer: Mailer,
    message: ProvisionCustomerMessage,
) -> None:
    """The `provision-customer` step: create the tenant, e-mail the sign-in, mark Active."""
    customer = book.customers.find(message.reseller, message.customer_id)
    if customer is None:
        log.warning("customer %s/%s no longer exists", message.reseller, message.customer_id)
        return
    if customer.status is not CustomerStatus.PROVISIONING:
        return  # redelivered after the step finished: nothing to do
    reseller = book.resellers.get("reseller", customer.reseller)
    try:
        created = partner_center.create_customer_tenant(
            _tenant_request(customer, reseller), request_id=customer.request_id
        )
    except UpstreamRejected as exc:
        if not _domain_taken(exc):
            raise
        earlier = _our_earlier_tenant(book, partner_center, reseller, customer)
        if earlier is None:
            raise  # taken by someone else: Failed, with Partner Center's reason
        _adopt(book, reseller, customer, earlier)
        return
    tenant_id, domain = created.tenant.id, created.tenant.domain or customer.domain.lower()
    creds = created.sign_in
    del created  # the answer holds the password: let it go as soon as the e-mail is written
    if creds is not None:
        mailer.send(
            _welcome_email(customer, reseller, creds), message_id=welcome_email_id(customer)
        )
    else:
        # The tenant exists but nobody can sign in to it: tell the reseller to reset the admin.
        log.warning("Partner Center returned no sign-in details for customer %s", customer.id)
        _queue_reset_notice(book, reseller, customer, _NO_SIGN_IN_RETURNED)

    def activate(c: Customer) -> bool:
        if c.status is not CustomerStatus.PROVISIONING:
            return False
        c.tenant_id, c.domain = tenant_id, domain
        _set_status(c, CustomerStatus.ACTIVE, book.clock.now())
        return True

    _change(book, customer, activate)
    log.info("customer %s/%s is Active (tenant %s)", customer.reseller, customer.id, tenant_id)


def _domain_taken(exc: UpstreamRejected) -> bool:
    return exc.status == 409 or exc.code == _DOMAIN_TAKEN_CODE


def _our_earlier_tenant(
    book: CustomerBook, partner_center: PartnerCenter, reseller: Reseller, customer: Customer
) -> Tenant | None:
    """The reseller's tenant with the customer's domain, unless another record of ours holds it.

    The domain is taken; if the tenant is among the reseller's own in Partner Center (and no
    other customer record has it), an earlier attempt of this customer created it and its
    answer was lost or its replay forgotten.
    """
    wanted = customer.domain.lower()
    for tenant in reseller_tenants(partner_center, reseller):
        if tenant.domain != wanted:
            continue
        tenant_id = tenant.id
        if not tenant_id:
            return None
        holder = book.customers.claim_owner(reseller.slug, Claim("tenant", tenant_id))
        if holder not in (None, customer.id):
            log.warning("tenant %s is already another customer's; not adopting it", tenant_id)
            return None
        return tenant
    return None


def reset_notice_id(customer: Customer) -> str:
    """The fixed id of the "reset the admin's password" e-mail (queued once per customer)."""
    return f"customer-{customer.id}-adopted"


# Why no sign-in could be sent, as the reset notice says it.
_EARLIER_ATTEMPT = (
    "It was created by an earlier attempt whose answer was lost, so its first admin's "
    "sign-in could not be sent.\n"
)
_NO_SIGN_IN_RETURNED = (
    "Microsoft Partner Center returned no sign-in details for its first admin, so none "
    "could be sent.\n"
)


def _reset_notice(
    customer: Customer, reseller: Reseller, why: str, users: Repository[User] | None
) -> Email | None:
    """To the requester and whom the reseller's notification settings name: the tenant is
    ready, reset the password (no secret in it, so the usual recipients may read it)."""
    return notifications.email_to(
        reseller,
        NotificationEvent.CUSTOMER_PROVISIONED,
        f"The Microsoft tenant {customer.domain} is ready",
        (
            f"The Microsoft tenant {customer.domain} of {customer.name} is ready.\n\n"
            f"{why}"
            "Reset the admin's password in the Microsoft 365 admin center "
            "(https://admin.microsoft.com) and hand it to the customer.\n"
        ),
        interested=[customer.created_by],
        users=users,
    )


def _queue_reset_notice(
    book: CustomerBook, reseller: Reseller, customer: Customer, why: str
) -> None:
    """Queue the "reset the admin's password" e-mail once (a fixed id), before activation."""
    email = _reset_notice(customer, reseller, why, book.users)
    if book.notifications is None or email is None:
        log.warning("no reset-the-admin e-mail for customer %s can be queued", customer.id)
    elif book.notifications.find(reseller.slug, reset_notice_id(customer)) is None:
        notifications.queue_email(
            book.notifications, reseller.slug, email, notification_id=reset_notice_id(customer)
        )


def _adopt(book: CustomerBook, reseller: Reseller, customer: Customer, tenant: Tenant) -> None:
    """Mark the customer Active with the earlier tenant; e-mail the reseller to reset the admin.

    The e-mail is queued first, under a fixed id, so a crash before activation queues it once.
    """
    tenant_id = tenant.id
    _queue_reset_notice(book, reseller, customer, _EARLIER_ATTEMPT)

    def activate(c: Customer) -> bool:
        if c.status is not CustomerStatus.PROVISIONING:
            return False
        c.tenant_id = tenant_id
        _set_status(c, CustomerStatus.ACTIVE, book.clock.now())
        return True

    _change(book, customer, activate)
    log.info(
        "customer %s/%s is Active with the tenant an earlier attempt created (%s)",
        customer.reseller,
        customer.id,
        tenant_id,
    )


def retry(
    book: CustomerBook,
    principal: Principal,
    reseller: str,
    customer_id: str,
    etag: str | None = None,
) -> Customer:
    """Provision a Failed (or stale Provisioning) new-tenant customer again.

    Back to Provisioning (the failure cleared) with its `provision-customer` message in the
    same transaction. After a transient or unknown failure the retry keeps the MS-RequestId,
    so Partner Center replays a create that did happen (a tenant it no longer replays is found
    among the reseller's by the step). After a definite refusal the same request would be
    refused again: the retry is a new request (a new MS-RequestId) for the data as it is now.
    """
    customer = get(book, principal, reseller, customer_id)
    if principal.is_customer_user:
        raise Forbidden("a customer's user cannot retry the provisioning")
    if customer.origin is not CustomerOrigin.NEW_TENANT:
        raise Conflict("only a customer created with a new tenant can be retried")
    now = book.clock.now()
    if not (customer.status is CustomerStatus.FAILED or _stale(book, customer, now)):
        raise Conflict(
            "only a Failed customer, or one Provisioning for longer than "
            f"{_minutes(book.stuck_after)}, can be retried; this one is {customer.status.value}"
        )
    holder = book.customers.claim_owner(reseller, Claim("domain", customer.domain))
    if holder not in (None, customer.id):
        raise Conflict(f"another customer now holds {customer.domain}; this one cannot be retried")
    customer.etag = expected_version(customer.etag, etag)
    if customer.failure_kind is FailureKind.REFUSED:
        customer.request_id = str(uuid.uuid4())
    _set_status(customer, CustomerStatus.PROVISIONING, now)
    customer.updated_at = now
    try:
        # The claim is taken here too: a record from before claim rows gets its claim now.
        return book.customers.update(
            customer, messages=[_provision_message(customer)], claims=customer.claims()
        )
    except ClaimTaken as exc:
        raise Conflict(
            f"another customer now holds {customer.domain}; this one cannot be retried"
        ) from exc


def _set_status(customer: Customer, status: CustomerStatus, now: datetime) -> None:
    """A new status, with the moment it began; leaving Failed forgets the failure."""
    customer.status, customer.status_since, customer.nudged_at = status, now, None
    if status is not CustomerStatus.FAILED:
        customer.failure_reason = customer.failure_kind = None


def _stale(book: CustomerBook, customer: Customer, now: datetime) -> bool:
    """Provisioning for longer than the deadline (counted from the last re-enqueue, if any)."""
    if customer.status is not CustomerStatus.PROVISIONING:
        return False
    since = customer.nudged_at or customer.status_since or customer.updated_at
    return now - since > book.stuck_after


def _minutes(span: timedelta) -> str:
    return f"{int(span.total_seconds() // 60)} minutes"


def give_up(book: CustomerBook, message: ProvisionCustomerMessage, failure: Failure) -> None:
    """Mark a customer still Provisioning Failed, with the reason, so a person can see it."""
    customer = book.customers.find(message.reseller, message.customer_id)
    if customer is None:
        return
    _fail(book, customer, failure)


def _fail(book: CustomerBook, customer: Customer, failure: Failure) -> None:
    def fail(c: Customer) -> bool:
        if c.status is not CustomerStatus.PROVISIONING:
            return False
        _set_status(c, CustomerStatus.FAILED, book.clock.now())
        c.failure_reason, c.failure_kind = failure.reason[:1000], failure.kind
        return True

    _change(book, customer, fail)


def _change(
    book: CustomerBook,
    customer: Customer,
    mutate: Callable[[Customer], bool],
    messages: Sequence[OutboxMessage] = (),
) -> None:
    """Apply `mutate` and save; a concurrent edit (a PATCH) is re-read and the change re-applied.

    Claims follow the record: a value it gained is claimed, one it lost is released, in the
    same transaction.
    """
    current = customer
    for _ in range(5):
        before = current.claims()
        if not mutate(current):
            return
        current.updated_at = book.clock.now()
        after = current.claims()
        try:
            book.customers.update(
                current, messages=messages, claims=after - before, releases=before - after
            )
            return
        except ConcurrencyConflict:
            current = book.customers.get(customer.reseller, customer.id)
    raise ConcurrencyConflict("the customer keeps changing; retry later")


# --- the watchdog's view of customers ---------------------------------------------------------


class ProvisioningCustomers:
    """Customers Provisioning, as the watchdog (`services/watchdog.py`) sees them.

    Found by one query on Status across resellers (Table Storage filters server-side and
    answers only the matching rows), so housekeeping never reads the customers at rest.
    """

    kind = "customer"

    def __init__(self, book: CustomerBook) -> None:
        self.book = book

    @property
    def deadline(self) -> timedelta:
        """How long a step may take before the watchdog acts."""
        return self.book.stuck_after

    def in_flight(self) -> Iterator[InFlight]:
        """Every customer Provisioning, with the moments the watchdog decides by."""
        token: str | None = None
        while True:
            page = self.book.customers.list(
                equals={"status": CustomerStatus.PROVISIONING},
                page_size=1000,
                continuation_token=token,
            )
            for c in page.items:
                yield InFlight(
                    kind=self.kind,
                    partition=c.reseller,
                    id=c.id,
                    status=c.status.value,
                    since=c.status_since or c.updated_at,
                    nudged_at=c.nudged_at,
                )
            token = page.continuation_token
            if token is None:
                return

    def nudge(self, item: InFlight) -> None:
        """Re-enqueue the step once (through the outbox), with the same MS-RequestId."""
        customer = self.book.customers.find(item.partition, item.id)
        if customer is None:
            return
        now = self.book.clock.now()

        def mark(c: Customer) -> bool:
            if c.status is not CustomerStatus.PROVISIONING or c.nudged_at is not None:
                return False
            c.nudged_at = now
            return True

        _change(self.book, customer, mark, messages=[_provision_message(customer)])

    def fail(self, item: InFlight, failure: Failure) -> None:
        """Mark the customer Failed (if it is still Provisioning)."""
        customer = self.book.customers.find(item.partition, item.id)
        if customer is not None:
            _fail(self.book, customer, failure)


# --- existing tenants ------------------------------------------------------------------------


def relationship_link(
    book: CustomerBook, partner_center: PartnerCenter, reseller_slug: str
) -> RelationshipLink:
    """The link an existing tenant's admin opens to accept this reseller (indirect)."""
    reseller = resellers.get(book.resellers, reseller_slug)
    url = partner_center.relationship_request_url()
    if "indirectCSPId=" not in url:
        base, hash_, fragment = url.partition("#")
        url = f"{base}&indirectCSPId={reseller.require_tenant_id()}{hash_}{fragment}"
    return RelationshipLink(url=url)


def reseller_tenants(partner_center: PartnerCenter, reseller: Reseller) -> Iterator[Tenant]:
    """The reseller's customer tenants in Partner Center, and no one else's.

    Partner Center's `IndirectReseller` filter is `starts_with`: it also returns the tenants of
    every reseller whose id begins with this one's. Only an exact `associatedPartnerId` counts.
    """
    tenant_id = reseller.require_tenant_id()
    for tenant in partner_center.customer_tenants(indirect_reseller_id=tenant_id):
        if reseller.owns(tenant.associated_partner_id):
            yield tenant


def _find_tenant(
    partner_center: PartnerCenter, reseller: Reseller, command: CustomerImport
) -> Tenant:
    if command.tenant_id:
        tenant = partner_center.customer_tenant(command.tenant_id)
        if not reseller.owns(tenant.associated_partner_id):
            raise NotFound("no tenant with this id has accepted this reseller")
        return tenant
    wanted = (command.domain or "").lower()
    for tenant in reseller_tenants(partner_center, reseller):
        if wanted in tenant.domains():
            return tenant
    raise NotFound("no tenant with this domain has accepted this reseller")


def import_existing(
    book: CustomerBook,
    partner_center: PartnerCenter,
    principal: Principal,
    reseller_slug: str,
    command: CustomerImport,
    customer_id: str | None = None,
) -> Customer:
    """Record one existing tenant that accepted the reseller (until sync finds them itself).

    `customer_id` (the Idempotency-Key's reserved id): when it exists, it is returned as is.
    """
    if (command.domain is None) == (command.tenant_id is None):
        raise ValidationFailed([FieldError("body", "give exactly one of domain or tenantId")])
    reseller = resellers.get(book.resellers, reseller_slug)
    if principal.is_customer_user:
        raise Forbidden("a customer's user cannot import customers")
    if (earlier := _created_earlier(book, reseller.slug, customer_id)) is not None:
        return earlier
    _check_segment(book, reseller.slug, command.segment, "segment")
    tenant = _find_tenant(partner_center, reseller, command)
    customer = from_tenant(tenant, reseller.slug, book.clock, command)
    if customer_id is not None:
        customer.id = customer_id
    try:
        return book.customers.add(customer, claims=customer.claims())
    except ClaimTaken as exc:
        raise Conflict(f"this tenant is already the customer {exc.owner}") from exc


def from_tenant(
    tenant: Tenant, reseller: str, clock: Clock, command: CustomerImport | None = None
) -> Customer:
    """An Active customer record for a tenant Partner Center already holds."""
    country = tenant.address.country
    company_id = tenant.registration_number
    if country in ("CZ", "SK") and company_id and not is_valid_ico(company_id):
        log.warning("tenant %s has a registration number that is no IČO", tenant.id)
    now = clock.now()
    return Customer(
        reseller=reseller,
        name=tenant.company_name or tenant.domain or "?",
        company_id=company_id,
        address=tenant.address.model_copy(),
        contact=tenant.contact.model_copy(),
        domain=tenant.domain,
        tenant_id=tenant.id or None,
        industry=command.industry if command else None,
        segment=command.segment if command else DEFAULT_SEGMENT,
        language=tenant.language,
        culture=tenant.culture,
        status=CustomerStatus.ACTIVE,
        origin=CustomerOrigin.EXISTING_TENANT,
        created_at=now,
        updated_at=now,
        status_since=now,
    )


# Company data Partner Center holds, which the sync copies onto our record: the tenant's
# company profile is what the customer's own admin keeps up to date there (and what Microsoft
# bills), so it wins; except a field a person changed here (`edited_fields`, marked by
# `update`), a deliberate local correction that the next night must not undo.
SYNCED_COMPANY_FIELDS = ("name", "company_id", "address", "contact", "language", "culture")


def take_company_data(customer: Customer, tenant: Tenant) -> bool:
    """Copy the tenant's company data onto the customer where it differs and was not edited
    here, field by field (an address's city, a contact's e-mail): what Partner Center leaves
    empty never replaces ours. Whether anything changed."""
    theirs: dict[str, object] = {
        "name": tenant.company_name,
        "company_id": tenant.registration_number,
        "address": tenant.address,
        "contact": tenant.contact,
        "language": tenant.language,
        "culture": tenant.culture,
    }
    changed = False
    for name in SYNCED_COMPANY_FIELDS:
        if name in customer.edited_fields:
            continue
        ours, value = getattr(customer, name), theirs[name]
        if isinstance(value, Address | Contact):
            said = {k: v for k, v in value.model_dump().items() if _says_something(v)}
            value = ours.model_copy(update=said)
        elif not _says_something(value):
            continue  # Partner Center not saying (a list without billing profiles): ours stays
        if ours != value:
            setattr(customer, name, value)
            changed = True
    if changed:
        customer.search_name = customer.name.lower()
    return changed


def _says_something(value: object) -> bool:
    return value is not None and (not isinstance(value, str) or bool(value.strip()))


# --- changing ---------------------------------------------------------------------------------


def update(
    book: CustomerBook,
    principal: Principal,
    reseller: str,
    customer_id: str,
    etag: str,
    command: CustomerUpdate,
) -> Customer:
    """Change industry, segment, contact or address, if the customer is still at `etag`."""
    customer = get(book, principal, reseller, customer_id)
    if principal.is_customer_user:
        raise Forbidden("a customer's user cannot change the customer")
    before = customer.claims()
    changes = command.model_dump(exclude_unset=True)
    if command.tenant_name is not None:
        if customer.status is not CustomerStatus.FAILED:
            raise Conflict("the tenant name can change only while the customer is Failed")
        if customer.failure_kind is not FailureKind.REFUSED:
            # After a transient failure Partner Center may have made the tenant under the old
            # name; the retry repeats that request, which a new name must not change.
            raise Conflict(
                "the tenant name can change only after Partner Center refused the name; this "
                "customer failed for another reason: retry it as it is"
            )
        customer.domain = tenant_domain(command.tenant_name)
    edited: list[str] = []
    if "segment" in changes and command.segment is not None:
        _check_segment(book, reseller, command.segment, "segment")
        edited += ["segment"] if customer.segment != command.segment else []
        customer.segment = command.segment
    if "industry" in changes:
        edited += ["industry"] if customer.industry != command.industry else []
        customer.industry = command.industry
    if command.contact is not None:
        contact = Contact(**command.contact.model_dump(mode="json"))
        edited += ["contact"] if customer.contact != contact else []
        customer.contact = contact
    if command.address is not None:
        country = command.address.country
        if country in ("CZ", "SK") and not is_valid_ico(customer.company_id or ""):
            raise ValidationFailed(
                [FieldError("address.country", f"the company id is not a valid IČO for {country}")]
            )
        address = Address(**command.address.model_dump())
        edited += ["address"] if customer.address != address else []
        customer.address = address
    # A person's change stays ours: the sync no longer copies Partner Center's value over it.
    customer.edited_fields = sorted({*customer.edited_fields, *edited})
    customer.etag = expected_version(customer.etag, etag)
    customer.updated_at = book.clock.now()
    after = customer.claims()
    try:
        return book.customers.update(customer, claims=after - before, releases=before - after)
    except ClaimTaken as exc:
        raise _taken_name(customer.domain, exc.owner) from exc


# --- the catalog's view of a customer ---------------------------------------------------------


class CustomerSegments:
    """The catalog's `CustomerDirectory` port, served from the Customers repository."""

    def __init__(self, customers: Repository[Customer]) -> None:
        self.customers = customers

    def segment_of(self, reseller: str, customer_id: str) -> str:
        """The segment id the customer buys in; NotFound if the reseller has no such customer."""
        found = (
            self.customers.find(reseller, customer_id) if _CUSTOMER_ID.match(customer_id) else None
        )
        if found is None:
            raise NotFound("there is no such customer")
        return found.segment or DEFAULT_SEGMENT

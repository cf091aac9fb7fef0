"""Partner Center's customer shapes mapped to ours (and back).

Only this module knows how a `POST /v1/customers` body looks and where the first admin's
sign-in hides in the answer (`userCredentials`, outside the documented model); the customers
service speaks `TenantRequest`, `Tenant`, `CreatedTenant`.
"""

from __future__ import annotations

from dataclasses import replace

from shared.adapters.partner_center import wire as pc
from shared.domain.customers import Address as OurAddress
from shared.domain.customers import (
    AdminSignIn,
    CreatedTenant,
    Qualification,
    Tenant,
    TenantRequest,
)
from shared.domain.customers import Contact as OurContact


def customer_body(request: TenantRequest) -> pc.Customer:
    """The body of `POST /v1/customers` for an indirect reseller's new tenant."""
    contact, address = request.contact, request.address
    return pc.Customer(
        associated_partner_id=request.reseller_tenant_id,
        company_profile=pc.CompanyProfile(
            domain=request.domain,
            company_name=request.company_name,
            organization_registration_number=request.registration_number,
        ),
        billing_profile=pc.BillingProfile(
            first_name=contact.first_name,
            last_name=contact.last_name,
            email=contact.email,
            culture=request.culture,
            language=request.language,
            company_name=request.company_name,
            default_address=pc.Address(
                country=address.country,
                city=address.city,
                address_line1=address.street,
                postal_code=address.postcode,
                first_name=contact.first_name,
                last_name=contact.last_name,
                phone_number=contact.phone,
            ),
        ),
    )


def tenant(customer: pc.Customer) -> Tenant:
    """A Partner Center customer as our `Tenant`."""
    company = customer.company_profile or pc.CompanyProfile()
    billing = customer.billing_profile or pc.BillingProfile()
    address = billing.default_address or pc.Address()
    return Tenant(
        id=company.tenant_id or customer.id or "",
        domain=(company.domain or "").lower(),
        company_name=company.company_name or billing.company_name,
        registration_number=company.organization_registration_number,
        associated_partner_id=customer.associated_partner_id,
        relationship=customer.relationship_to_partner,
        custom_domains=tuple(customer.custom_domains or ()),
        contact=OurContact(
            first_name=billing.first_name or address.first_name,
            last_name=billing.last_name or address.last_name,
            email=billing.email,
            phone=address.phone_number,
        ),
        address=OurAddress(
            country=(address.country or "").upper() or None,
            street=address.address_line1,
            city=address.city,
            postcode=address.postal_code,
        ),
        language=billing.language,
        culture=billing.culture,
    )


def created_tenant(created: pc.Customer, requested_domain: str) -> CreatedTenant:
    """The answer to a create: the tenant, and the admin's sign-in when Partner Center gave it."""
    found = tenant(created)
    if not found.domain:
        found = replace(found, domain=requested_domain.lower())
    return CreatedTenant(tenant=found, sign_in=_sign_in(created, found.domain))


def _sign_in(created: pc.Customer, domain: str) -> AdminSignIn | None:
    raw = (created.model_extra or {}).get("userCredentials")
    if not isinstance(raw, dict) or not raw.get("password"):
        return None
    user = str(raw.get("userName") or "admin")
    if "@" not in user:
        user = f"{user}@{domain}"
    return AdminSignIn(user, str(raw["password"]))


# Partner Center's qualification names for our segments (the qualifications page lists
# "Education", "GovernmentCommunityCloud", "StateOwnedEntity"; nonprofit offers use "Nonprofit").
_QUALIFICATION_NAMES = {
    "education": ("education",),
    "government": ("governmentcommunitycloud", "government"),
    "nonprofit": ("nonprofit",),
}
_VETTING = {
    "approved": Qualification.APPROVED,
    "inreview": Qualification.PENDING,
    "underreview": Qualification.PENDING,
    "pending": Qualification.PENDING,
    "denied": Qualification.REJECTED,
    "rejected": Qualification.REJECTED,
}


def qualification(entries: list[pc.CustomerQualification], segment: str) -> Qualification:
    """Microsoft's verdict for `segment` from the customer's qualifications: None when the list
    has no entry for it; an entry without a vetting status counts as Approved (the page's
    StateOwnedEntity samples carry none), an unknown status as Pending (it can't transact yet)."""
    names = _QUALIFICATION_NAMES.get(segment.lower(), (segment.lower(),))
    found = [e for e in entries if (e.qualification or "").replace(" ", "").lower() in names]
    if not found:
        return Qualification.NONE
    status = (found[-1].vetting_status or "approved").replace(" ", "").replace("_", "").lower()
    return _VETTING.get(status, Qualification.PENDING)

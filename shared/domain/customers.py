"""Customers of a reseller: the record, its states, and the rules every field must satisfy.

Rules (checked where a body is parsed, so every invalid field is named in one answer):

- company id: for CZ and SK the IČO, 8 digits whose last is the mod-11 check digit of the first
  seven (weights 8..2, check = (11 - sum mod 11) mod 10); elsewhere free text;
- postcode: CZ and SK `NNN NN` (the space is optional on input and added when stored);
- phone: E.164, `+` then 8-15 digits (spaces, dots and dashes on input are dropped);
- tenant name: the part before `.onmicrosoft.com`, letters and digits only, 1-27 characters
  (27 is the limit we apply for Microsoft's initial domain prefix; Partner Center itself answers
  whether the name is free).
"""

from __future__ import annotations

import contextvars
import re
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import (
    AwareDatetime,
    ConfigDict,
    EmailStr,
    Field,
    ModelWrapValidatorHandler,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared.domain.claims import Claim
from shared.domain.failures import FailureKind
from shared.domain.model import Timestamped, WireModel, new_id

TENANT_SUFFIX = ".onmicrosoft.com"
TENANT_NAME_MAX = 27
TENANT_NAME_PATTERN = rf"^[A-Za-z0-9]{{1,{TENANT_NAME_MAX}}}$"
_TENANT_NAME = re.compile(TENANT_NAME_PATTERN)
_ICO_COUNTRIES = frozenset({"CZ", "SK"})
_POSTCODE_CZ_SK = re.compile(r"^(\d{3}) ?(\d{2})$")
_E164 = re.compile(r"^\+[1-9]\d{7,14}$")
_PHONE_NOISE = re.compile(r"[\s.()-]")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
# Segment ids as the catalog spells them (lowercase, digits, dashes).
SEGMENT_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$"
DEFAULT_SEGMENT = "commercial"
# Language and culture Partner Center gets when the body leaves them out.
_LOCALES = {"CZ": ("cs", "cs-CZ"), "SK": ("sk", "sk-SK")}
_DEFAULT_LOCALE = ("en", "en-US")
_RAW_COUNTRY: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "raw_country", default=None
)


# What a customer's own users read when their tenant could not be set up: the recorded reason
# (Partner Center's or storage's words, or "gave up after 5 tries: ...") is for staff and logs.
FAILED_FOR_CUSTOMER_USERS = (
    "Your Microsoft tenant could not be set up yet. Your reseller can see what went wrong and "
    "try again; please contact them if this does not change."
)


class CustomerStatus(StrEnum):
    """Where a customer is in its life (DESIGN.md, States)."""

    PROVISIONING = "Provisioning"
    ACTIVE = "Active"
    FAILED = "Failed"


class Qualification(StrEnum):
    """Microsoft's verification of an education, government or nonprofit customer."""

    NONE = "None"
    PENDING = "Pending"
    APPROVED = "Approved"
    REJECTED = "Rejected"


class CustomerOrigin(StrEnum):
    """How the customer came to the platform."""

    NEW_TENANT = "NewTenant"  # the platform created its tenant
    EXISTING_TENANT = "ExistingTenant"  # its tenant existed; the admin accepted the reseller


def ico_check_digit(first_seven: str) -> int:
    """The IČO check digit of seven digits: weights 8..2, (11 - sum mod 11) mod 10."""
    if len(first_seven) != 7 or not first_seven.isdigit() or not first_seven.isascii():
        raise ValueError("seven digits expected")
    total = sum(int(d) * w for d, w in zip(first_seven, range(8, 1, -1), strict=True))
    return (11 - total % 11) % 10


def is_valid_ico(value: str) -> bool:
    """Whether `value` is an IČO: exactly 8 ASCII digits with a matching check digit."""
    if len(value) != 8 or not value.isdigit() or not value.isascii():
        return False
    return ico_check_digit(value[:7]) == int(value[7])


def normalise_postcode(country: str, value: str) -> str:
    """The postcode as stored (`NNN NN` for CZ/SK); ValueError when it cannot be one."""
    text = value.strip()
    if country in _ICO_COUNTRIES:
        match = _POSTCODE_CZ_SK.match(text)
        if match is None:
            raise ValueError(f"a {country} postcode is five digits, NNN NN")
        return f"{match.group(1)} {match.group(2)}"
    if not 1 <= len(text) <= 20:
        raise ValueError("must be 1-20 characters")
    return text


def normalise_phone(value: str) -> str:
    """The phone number in E.164; ValueError when it is not one."""
    text = _PHONE_NOISE.sub("", value)
    if not _E164.match(text):
        raise ValueError("must be in E.164 form: + and 8-15 digits, e.g. +420601123456")
    return text


def is_tenant_name(value: str) -> bool:
    """Whether `value` can be the part before `.onmicrosoft.com`."""
    return bool(_TENANT_NAME.match(value))


def tenant_domain(name: str) -> str:
    """`contoso` → `contoso.onmicrosoft.com` (domains compare lower-case)."""
    return f"{name.lower()}{TENANT_SUFFIX}"


def default_locale(country: str) -> tuple[str, str]:
    """(language, culture) for a country when the body names none."""
    return _LOCALES.get(country, _DEFAULT_LOCALE)


def _error(kind: str, message: str) -> ValueError:
    # The HTTP edge drops pydantic's "Value error, " prefix; `kind` documents the rule.
    return ValueError(message)


def _check_company_id(value: str, country: str | None) -> str:
    text = value.strip()
    if country in _ICO_COUNTRIES:
        digits = text.replace(" ", "")
        if not is_valid_ico(digits):
            raise _error("ico", f"is not a valid IČO for {country} (8 digits with its check digit)")
        return digits
    if not 1 <= len(text) <= 50:
        raise _error("company_id", "must be 1-50 characters")
    return text


def _check_tenant_name(value: str) -> str:
    if not is_tenant_name(value):
        raise _error(
            "tenant_name",
            f"letters and digits only, 1-{TENANT_NAME_MAX} characters "
            "(the part before .onmicrosoft.com)",
        )
    return value.lower()


# --- what travels over HTTP ------------------------------------------------------------------


class AddressInput(WireModel):
    """A postal address; the postcode is checked against the country's format."""

    model_config = ConfigDict(extra="forbid")

    country: str = Field(description="ISO 3166-1 alpha-2 code, e.g. CZ.")
    street: str = Field(min_length=1, max_length=200, description="Street and number.")
    city: str = Field(min_length=1, max_length=100)
    postcode: str = Field(min_length=1, max_length=20)

    @field_validator("country", mode="before")
    @classmethod
    def _country(cls, value: Any) -> Any:
        if isinstance(value, str):
            code = value.strip().upper()
            if not _COUNTRY.match(code):
                raise _error("country", "must be an ISO 3166-1 alpha-2 country code, e.g. CZ")
            return code
        return value

    @field_validator("postcode")
    @classmethod
    def _postcode(cls, value: str, info: ValidationInfo) -> str:
        country = info.data.get("country")
        try:
            return normalise_postcode(country or "", value)
        except ValueError as exc:
            raise _error("postcode", str(exc)) from None


class ContactInput(WireModel):
    """The customer's contact person."""

    model_config = ConfigDict(extra="forbid")

    first_name: str = Field(min_length=1, max_length=100)
    last_name: str = Field(min_length=1, max_length=100)
    email: EmailStr
    phone: str = Field(description="E.164, e.g. +420601123456.")

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        try:
            return normalise_phone(value)
        except ValueError as exc:
            raise _error("phone", str(exc)) from None


class CustomerCreate(WireModel):
    """A new customer with a new Microsoft tenant `<tenantName>.onmicrosoft.com`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="Organisation name.")
    # Address before company id: the IČO rule depends on the country.
    address: AddressInput
    company_id: str = Field(description="For CZ and SK the IČO (8 digits); else free text.")
    contact: ContactInput
    tenant_name: str = Field(
        description="The tenant's name before .onmicrosoft.com: letters and digits, 1-27."
    )
    industry: str | None = Field(None, min_length=1, max_length=100)
    segment: str = Field(
        DEFAULT_SEGMENT, pattern=SEGMENT_PATTERN, description="The catalog segment it buys in."
    )
    language: str | None = Field(None, pattern=r"^[a-z]{2}$", description="e.g. cs")
    culture: str | None = Field(None, pattern=r"^[a-z]{2}-[A-Z]{2}$", description="e.g. cs-CZ")

    @model_validator(mode="wrap")
    @classmethod
    def _country_for_company_id(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        # The IČO rule needs the country even when another address field is invalid, so that
        # one answer names every bad field: read it from the raw body before fields validate.
        address = data.get("address") if isinstance(data, dict) else None
        country = address.get("country") if isinstance(address, dict) else None
        token = _RAW_COUNTRY.set(country.strip().upper() if isinstance(country, str) else None)
        try:
            return handler(data)
        finally:
            _RAW_COUNTRY.reset(token)

    @field_validator("company_id")
    @classmethod
    def _company_id(cls, value: str, info: ValidationInfo) -> str:
        address = info.data.get("address")
        return _check_company_id(value, address.country if address else _RAW_COUNTRY.get())

    @field_validator("tenant_name")
    @classmethod
    def _tenant_name(cls, value: str) -> str:
        return _check_tenant_name(value)


class CustomerUpdate(WireModel):
    """Change industry, segment, contact or address; fields left out stay as they are.

    `tenantName` may change only while the customer is Failed (its tenant was never created),
    e.g. after Partner Center refused the name.
    """

    model_config = ConfigDict(extra="forbid")

    tenant_name: str | None = Field(
        None, description="Only of a Failed new-tenant customer: the name before .onmicrosoft.com."
    )
    industry: str | None = Field(None, min_length=1, max_length=100)
    segment: str | None = Field(None, pattern=SEGMENT_PATTERN)
    contact: ContactInput | None = None
    address: AddressInput | None = None

    @field_validator("tenant_name")
    @classmethod
    def _tenant_name(cls, value: str | None) -> str | None:
        return None if value is None else _check_tenant_name(value)


class CustomerImport(WireModel):
    """Import one existing tenant that accepted the reseller: by its domain or tenant id."""

    model_config = ConfigDict(extra="forbid")

    domain: str | None = Field(
        None, min_length=3, max_length=253, pattern=r"^[A-Za-z0-9.-]+$", description="Any domain."
    )
    tenant_id: str | None = Field(
        None, pattern=r"^[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$"
    )
    segment: str = Field(DEFAULT_SEGMENT, pattern=SEGMENT_PATTERN)
    industry: str | None = Field(None, min_length=1, max_length=100)


# --- what is stored ----------------------------------------------------------------------------


class Address(WireModel):
    """A stored address (lenient: imported tenants bring what Partner Center holds)."""

    country: str | None = None
    street: str | None = None
    city: str | None = None
    postcode: str | None = None


class Contact(WireModel):
    """A stored contact."""

    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None


class Customer(Timestamped):
    """A reseller's customer (table `Customers`: reseller slug, customer id).

    Holds no secret: the first admin's password goes from Partner Center's answer straight into
    the e-mail to the contact and is never part of this record.
    """

    reseller: str
    id: str = Field(default_factory=new_id)
    name: str
    company_id: str | None = None
    address: Address = Field(default_factory=Address)
    contact: Contact = Field(default_factory=Contact)
    domain: str  # <tenant name>.onmicrosoft.com, lower-case
    tenant_id: str | None = None
    industry: str | None = None
    segment: str = DEFAULT_SEGMENT
    language: str | None = None
    culture: str | None = None
    status: CustomerStatus = CustomerStatus.PROVISIONING
    origin: CustomerOrigin = CustomerOrigin.NEW_TENANT
    # Microsoft's verification of the segment (education, government, nonprofit); from sync.
    qualification: Qualification = Qualification.NONE
    failure_reason: str | None = None
    # Refused (fix the data, retry as a new request) or Transient (retry the same request).
    failure_kind: FailureKind | None = None
    # When the status last changed to what it is (the watchdog's clock for Provisioning);
    # records from before this field fall back to updated_at.
    status_since: AwareDatetime | None = None
    # When the watchdog re-enqueued the step of this Provisioning (it does so once).
    nudged_at: AwareDatetime | None = None
    subscription_count: int = 0
    # MS-RequestId of the create call: fixed at POST, reused by every retry of the step, and
    # replaced only by a retry after a definite refusal (a new request for the fixed data).
    request_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    created_by: str | None = None  # e-mail of the user who asked for it (copied on the e-mail)
    # Lower-cased name, for the name filter of the list.
    search_name: str = ""
    # Kept by the sync (shared/domain/sync.py): the run that last changed this record and what
    # it did; Partner Center no longer listing the tenant as this reseller's (flagged, never
    # deleted); company fields a person changed here, which the sync no longer overwrites.
    sync_run: str | None = None
    sync_change: str | None = None
    unassociated_since: AwareDatetime | None = None
    edited_fields: list[str] = Field(default_factory=list)

    def model_post_init(self, context: Any) -> None:
        """Keep the search key in step with the name."""
        if not self.search_name:
            self.search_name = self.name.lower()

    def claims(self) -> set[Claim]:
        """The unique values this customer holds in its reseller: its domain, its tenant id."""
        held = {Claim("domain", self.domain)} if self.domain else set()
        if self.tenant_id:
            held.add(Claim("tenant", self.tenant_id))
        return held


# --- the tenant at Microsoft (what the PartnerCenter port speaks) ------------------------------


@dataclass(frozen=True)
class TenantRequest:
    """What we ask Partner Center to create: a new tenant for an indirect reseller's customer."""

    domain: str  # <tenant name>.onmicrosoft.com
    company_name: str
    registration_number: str | None
    contact: Contact
    address: Address
    culture: str | None
    language: str | None
    reseller_tenant_id: str  # the indirect reseller the tenant is associated with


@dataclass(frozen=True)
class Tenant:
    """A customer tenant as Partner Center holds it, in our words."""

    id: str
    domain: str  # the initial domain, lower-case ("" when Partner Center gave none)
    company_name: str | None = None
    registration_number: str | None = None
    associated_partner_id: str | None = None  # the indirect reseller's tenant id
    relationship: str | None = None
    custom_domains: tuple[str, ...] = ()
    contact: Contact = field(default_factory=Contact)
    address: Address = field(default_factory=Address)
    language: str | None = None
    culture: str | None = None

    def domains(self) -> set[str]:
        """Every domain of the tenant, lower-case."""
        found = {self.domain.lower()} if self.domain else set()
        return found | {d.lower() for d in self.custom_domains}


@dataclass(frozen=True)
class AdminSignIn:
    """The first admin's sign-in, held in memory only (never stored, never logged)."""

    user_name: str
    password: str

    def __repr__(self) -> str:
        return "AdminSignIn(<redacted>)"


@dataclass(frozen=True)
class CreatedTenant:
    """The answer to a create: the tenant and, once, its first admin's sign-in (if given)."""

    tenant: Tenant
    sign_in: AdminSignIn | None = field(default=None, repr=False)


class ProvisionCustomerMessage(WireModel):
    """The `provision-customer` queue message: ids only, the record holds the data."""

    reseller: str
    customer_id: str
    message_id: str | None = None

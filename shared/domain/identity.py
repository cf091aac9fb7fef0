"""Who is who: resellers, users, roles, sign-in identities, invitations and reseller settings."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    field_validator,
    model_validator,
)

from shared.domain.claims import Claim
from shared.domain.errors import Conflict
from shared.domain.model import Record, Timestamped, WireModel, new_id

# The Users partition of the distributor's own people (a reseller slug can never be "*").
DISTRIBUTOR = "*"
RESELLER_PARTITION = "reseller"
# The one answer to a missing, forged, expired or foreign token: no reason that helps an attacker.
SIGN_IN_REQUIRED = "Sign-in required: send a valid bearer token."

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$"
# Partner Center knows an indirect reseller by two ids (REFERENCE.md, "Two ids for one indirect
# reseller"): its tenant id (a GUID: `associatedPartnerId`, the `IndirectReseller` customer
# filter) and its MPN id (digits: a cart line's `transaction_reseller`, `partnerIdOnRecord`).
TENANT_ID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
MPN_ID_PATTERN = r"^\d{5,10}$"
# Customer ids are Partner Center tenant ids (GUIDs) or our own ULIDs until one exists.
CUSTOMER_ID_PATTERN = (
    r"^(?:[0-9A-HJKMNP-TV-Z]{26}|[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12})$"
)
_KEY_UNSAFE = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")


class Role(StrEnum):
    """What a user may do (DESIGN.md, "Who may do what")."""

    DISTRIBUTOR_ADMIN = "DistributorAdmin"
    ACCOUNT_MANAGER = "AccountManager"
    SALES = "Sales"
    READ_ONLY = "ReadOnly"
    CUSTOMER_ADMIN = "CustomerAdmin"
    CUSTOMER_READER = "CustomerReader"


RESELLER_ROLES = frozenset({Role.ACCOUNT_MANAGER, Role.SALES, Role.READ_ONLY})
CUSTOMER_ROLES = frozenset({Role.CUSTOMER_ADMIN, Role.CUSTOMER_READER})


class SignInKind(StrEnum):
    """The three sign-in methods; each trusted issuer is of one kind."""

    PLATFORM = "platform"  # the platform's own accounts (an Entra External ID tenant)
    WORK = "work"  # Entra ID work or school accounts
    PERSONAL = "personal"  # personal Microsoft accounts (the consumer issuer)


class UserStatus(StrEnum):
    """Where a user is in its life."""

    INVITED = "Invited"
    ACTIVE = "Active"
    DISABLED = "Disabled"


class Command(WireModel):
    """A request body: camelCase, unknown fields refused."""

    model_config = ConfigDict(extra="forbid")


# --- Sign-in ---------------------------------------------------------------------------------


class VerifiedToken(BaseModel):
    """A caller's credentials after every check passed (signature, expiry, audience, issuer)."""

    model_config = ConfigDict(frozen=True)

    issuer: str
    subject: str
    kind: SignInKind
    email: str | None = None
    name: str | None = None
    tenant_id: str | None = None


@dataclass(frozen=True)
class Principal:
    """The signed-in user a request acts for."""

    user_id: str
    reseller: str  # a reseller slug, or DISTRIBUTOR
    customer_id: str | None
    role: Role
    email: str
    kind: SignInKind

    @property
    def is_distributor(self) -> bool:
        """A distributor admin: sees every reseller."""
        return self.reseller == DISTRIBUTOR

    @property
    def is_customer_user(self) -> bool:
        """A user of one customer: sees only that customer, never cost or margin."""
        return self.customer_id is not None


def issuer_key(issuer: str) -> str:
    """The Identities PartitionKey of an issuer (issuer URLs hold `/`, which keys refuse)."""
    return hashlib.sha256(issuer.encode()).hexdigest()[:32]


def subject_key(subject: str) -> str:
    """The Identities RowKey of a subject: itself when storage allows it, else a hash."""
    if subject and len(subject) <= 200 and not _KEY_UNSAFE.search(subject):
        return subject
    return "h-" + hashlib.sha256(subject.encode()).hexdigest()


class LinkedIdentity(WireModel):
    """One sign-in method linked to a user."""

    kind: SignInKind
    issuer: str
    subject: str
    linked_at: AwareDatetime


class Identity(Record):
    """(issuer, subject) → user: the one point read that turns a token into a user."""

    issuer_key: str
    subject_key: str
    issuer: str
    subject: str
    kind: SignInKind
    reseller: str
    user_id: str
    created_at: AwareDatetime


# --- Resellers and their settings ------------------------------------------------------------


class SignInSettings(WireModel):
    """Which sign-in methods the reseller's users may use; the platform account always."""

    model_config = ConfigDict(extra="forbid")

    allowed_methods: list[SignInKind] = Field(
        default_factory=lambda: list(SignInKind), min_length=1
    )

    @field_validator("allowed_methods")
    @classmethod
    def _platform_stays(cls, value: list[SignInKind]) -> list[SignInKind]:
        if SignInKind.PLATFORM not in value:
            raise ValueError("the platform account is every user's primary sign-in")
        return list(dict.fromkeys(value))


class NotificationEvent(StrEnum):
    """Events a reseller can be e-mailed about."""

    INVITATION_ACCEPTED = "invitationAccepted"
    CUSTOMER_PROVISIONED = "customerProvisioned"
    ORDER_COMPLETED = "orderCompleted"
    ORDER_FAILED = "orderFailed"
    SUBSCRIPTION_CHANGED = "subscriptionChanged"
    RENEWAL_SOON = "renewalSoon"
    TRIAL_EXPIRING = "trialExpiring"
    CANCELLATION_WINDOW_CLOSING = "cancellationWindowClosing"
    SYNC_FAILED = "syncFailed"
    QUOTE_SENT = "quoteSent"  # to the customer's contact and users
    QUOTE_ANSWERED = "quoteAnswered"  # to the reseller: accepted, declined, changes asked
    QUOTE_EXPIRED = "quoteExpired"  # to the reseller


class NotificationSettings(WireModel):
    """Which events are e-mailed, and to whom besides the Account Managers."""

    model_config = ConfigDict(extra="forbid")

    events: dict[NotificationEvent, bool] = Field(
        default_factory=lambda: dict.fromkeys(NotificationEvent, True)
    )
    extra_recipients: list[EmailStr] = Field(default_factory=list, max_length=10)


_COLOUR = r"^#[0-9a-fA-F]{6}$"


class Appearance(WireModel):
    """How the reseller's portal looks to its users and customers."""

    model_config = ConfigDict(extra="forbid")

    display_name: str = Field(min_length=1, max_length=100)
    primary_color: str = Field("#0f6cbd", pattern=_COLOUR)
    secondary_color: str = Field("#ffffff", pattern=_COLOUR)
    logo_url: str | None = Field(None, max_length=2000, pattern=r"^https://[^\s]+$")
    support_email: EmailStr | None = None
    support_phone: str | None = Field(None, max_length=30, pattern=r"^\+?[0-9 ()-]{3,30}$")
    support_url: str | None = Field(None, max_length=2000, pattern=r"^https://[^\s]+$")


class ResellerSettings(WireModel):
    """A reseller's settings: sign-in methods, notifications, appearance."""

    model_config = ConfigDict(extra="forbid")

    sign_in: SignInSettings = Field(default_factory=SignInSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    appearance: Appearance
    orders_require_approval: bool = Field(
        False, description="Every submitted order waits for an Account Manager's approval."
    )
    customer_ordering_enabled: bool = Field(
        False, description="Customer admins may create and submit orders (always approved first)."
    )
    quote_valid_days: int = Field(
        30, ge=1, le=365, description="How long a sent quote can be accepted, unless it says."
    )
    customer_subscription_changes_enabled: bool = Field(
        False,
        description="Customer admins may change their subscriptions (each change is a Change "
        "order approved first).",
    )
    usage_markup_percent: Decimal | None = Field(
        None,
        ge=0,
        le=1000,
        decimal_places=2,
        description="Mark-up over the reseller cost of Azure usage (percent); default: the "
        "reseller's default mark-up.",
    )


def same_partner_id(a: str | None, b: str | None) -> bool:
    """Whether two Partner Center partner ids are the same one (exactly; GUIDs ignore case).

    Partner Center's `IndirectReseller` customer filter is `starts_with`: a tenant it returns
    belongs to a reseller only if its `associatedPartnerId` passes this test.
    """
    if not a or not b:
        return False
    return a.strip().lower() == b.strip().lower()


class ResellerIncomplete(Conflict):
    """The reseller lacks a Partner Center id an operation needs; a distributor admin adds it."""

    title = "Reseller incomplete"


class Reseller(Timestamped):
    """A tenant of the platform: a company selling CSP licences to its customers.

    Records stored before the two Partner Center ids were split hold one `PartnerCenterId`
    (a GUID or an MPN id); it is read into the matching field (`legacy_properties`) and the
    other stays None until a distributor admin sets it; operations that need a missing id
    refuse with `ResellerIncomplete`.
    """

    # Storage properties of older versions of this record, read into `_migrate`.
    legacy_properties: ClassVar[dict[str, str]] = {"PartnerCenterId": "partner_center_id"}
    # Rows written before the rename call the default mark-up a "margin".
    renamed_fields: ClassVar[Mapping[str, str]] = {
        "default_markup_percent": "default_margin_percent"
    }

    slug: str = Field(pattern=SLUG_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    partner_center_tenant_id: str | None = Field(None, pattern=TENANT_ID_PATTERN)
    mpn_id: str | None = Field(None, pattern=MPN_ID_PATTERN)
    country: str = Field(pattern=r"^[A-Z]{2}$")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    # Customer price = reseller cost × (1 + this %) when nothing more specific is set.
    default_markup_percent: Decimal = Field(Decimal("10"), ge=0, le=1000, decimal_places=2)
    # Reseller cost = Microsoft cost × (1 + this %); None: the distributor's default setting.
    distributor_markup_percent: Decimal | None = Field(None, ge=0, le=1000, decimal_places=2)
    settings: ResellerSettings

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "partner_center_id" not in data:
            return data
        data = dict(data)
        legacy = str(data.pop("partner_center_id") or "")
        if re.match(TENANT_ID_PATTERN, legacy):
            data.setdefault("partner_center_tenant_id", legacy.lower())
        elif re.match(MPN_ID_PATTERN, legacy):
            data.setdefault("mpn_id", legacy)
        return data

    def owns(self, associated_partner_id: str | None) -> bool:
        """Whether a Partner Center customer with this `associatedPartnerId` is this reseller's."""
        return same_partner_id(self.partner_center_tenant_id, associated_partner_id)

    def require_tenant_id(self) -> str:
        """The Partner Center tenant id, or ResellerIncomplete saying how to add it."""
        if not self.partner_center_tenant_id:
            raise ResellerIncomplete(self._missing("partnerCenterTenantId", "tenant id (GUID)"))
        return self.partner_center_tenant_id

    def require_mpn_id(self) -> str:
        """The MPN id (a cart line's `transaction_reseller`), or ResellerIncomplete."""
        if not self.mpn_id:
            raise ResellerIncomplete(self._missing("mpnId", "MPN id (PartnerID, digits)"))
        return self.mpn_id

    def _missing(self, field: str, what: str) -> str:
        return (
            f"reseller {self.slug!r} has no Partner Center {what} on record; a distributor "
            f"admin sets it with PATCH /api/resellers/{self.slug} ({field})"
        )


class IndirectReseller(BaseModel):
    """An indirect reseller as Partner Center lists it for the distributor."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    name: str
    mpn_id: str | None = None
    active: bool = True
    location: str | None = None


# --- Users and invitations -------------------------------------------------------------------


class User(Timestamped):
    """A person of a reseller (or of one of its customers, when `customer_id` is set)."""

    reseller: str
    id: str = Field(default_factory=new_id)
    email: str = Field(max_length=320)
    display_name: str | None = Field(None, max_length=200)
    role: Role
    customer_id: str | None = None
    status: UserStatus = UserStatus.INVITED
    identities: list[LinkedIdentity] = Field(default_factory=list)

    def linked(self, kind: SignInKind) -> LinkedIdentity | None:
        """The identity of `kind` linked to this user, if any."""
        return next((i for i in self.identities if i.kind is kind), None)

    def claims(self) -> set[Claim]:
        """The unique values this user holds among its reseller's users: its e-mail."""
        return {Claim("email", normalise_email(self.email))}


class Invitation(Record):
    """An e-mailed, single-use, expiring invitation for one user; stored by token hash."""

    reseller: str
    token_hash: str
    user_id: str
    email: str
    role: Role
    customer_id: str | None = None
    invited_by: str
    created_at: AwareDatetime
    expires_at: AwareDatetime
    accepted_at: AwareDatetime | None = None

    def usable_at(self, now: datetime) -> bool:
        """Not yet accepted and not expired."""
        return self.accepted_at is None and now < self.expires_at


def token_hash(secret: str) -> str:
    """What is stored of an invitation's secret (the secret itself only travels by e-mail)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def normalise_email(email: str) -> str:
    """E-mail addresses compare case-insensitively."""
    return email.strip().lower()

"""Who is who: resellers, users, roles, sign-in identities, invitations and reseller settings."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field, field_validator

from shared.domain.model import Record, Timestamped, WireModel, new_id

# The Users partition of the distributor's own people (a reseller slug can never be "*").
DISTRIBUTOR = "*"
RESELLER_PARTITION = "reseller"
# The one answer to a missing, forged, expired or foreign token: no reason that helps an attacker.
SIGN_IN_REQUIRED = "Sign-in required: send a valid bearer token."

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$"
# Partner Center names an indirect reseller by its tenant id (GUID) or its MPN id (digits).
PARTNER_ID_PATTERN = (
    r"^(?:\d{5,10}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
)
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
    SYNC_FAILED = "syncFailed"


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


class Reseller(Timestamped):
    """A tenant of the platform: a company selling CSP licences to its customers."""

    slug: str = Field(pattern=SLUG_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    partner_center_id: str = Field(pattern=PARTNER_ID_PATTERN)
    country: str = Field(pattern=r"^[A-Z]{2}$")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    default_margin_percent: Decimal = Field(Decimal("10"), ge=0, le=1000, decimal_places=2)
    settings: ResellerSettings


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

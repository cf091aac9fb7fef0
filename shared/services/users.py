"""Users of a reseller and of its customers: invitations, roles, disabling, `GET /me`."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta

from pydantic import AwareDatetime, EmailStr, Field

from shared.domain.errors import (
    ClaimTaken,
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    ValidationFailed,
)
from shared.domain.identity import (
    CUSTOMER_ID_PATTERN,
    CUSTOMER_ROLES,
    DISTRIBUTOR,
    RESELLER_PARTITION,
    RESELLER_ROLES,
    SLUG_PATTERN,
    Command,
    Invitation,
    Principal,
    Role,
    SignInKind,
    User,
    UserStatus,
    VerifiedToken,
    normalise_email,
    token_hash,
)
from shared.domain.model import Page, WireModel, expected_version
from shared.domain.notifications import Email, secret_placeholder
from shared.services import access, identity, notifications, resellers
from shared.services.access import Action
from shared.services.identity import Directory

_SLUG = re.compile(SLUG_PATTERN)
_USER_ID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


class UserInvite(Command):
    """Invite a person: e-mail, role, and organisation (the reseller, or one of its customers).

    A customer id must be one of the reseller's customers.
    """

    email: EmailStr
    role: Role
    customer_id: str | None = Field(
        None,
        pattern=CUSTOMER_ID_PATTERN,
        description="The customer the user belongs to; leave out for the reseller itself.",
    )
    display_name: str | None = Field(None, min_length=1, max_length=200)


class UserUpdate(Command):
    """Change a user's role or status; fields left out stay as they are."""

    role: Role | None = None
    status: UserStatus | None = Field(None, description="Active or Disabled.")


class UserView(WireModel):
    """A user as the platform shows it."""

    id: str
    email: str
    display_name: str | None
    role: Role
    reseller: str
    customer_id: str | None
    status: UserStatus
    sign_in_methods: list[SignInKind]
    created_at: AwareDatetime
    updated_at: AwareDatetime


class InvitationSent(WireModel):
    """The invited user and until when the e-mailed invitation can be accepted."""

    user: UserView
    expires_at: AwareDatetime


class Me(WireModel):
    """The caller: its user, role, organisation, how it signed in and what it may do."""

    user: UserView
    signed_in_with: SignInKind
    sees_cost: bool
    permissions: list[Action]


def present(user: User) -> UserView:
    """The wire view of a user."""
    return UserView(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        role=user.role,
        reseller=user.reseller,
        customer_id=user.customer_id,
        status=user.status,
        sign_in_methods=[i.kind for i in user.identities],
        created_at=user.created_at,
        updated_at=user.updated_at,
    )


def me(directory: Directory, principal: Principal) -> Me:
    """The caller's own profile."""
    user = directory.users.get(principal.reseller, principal.user_id)
    return Me(
        user=present(user),
        signed_in_with=principal.kind,
        sees_cost=access.sees_cost(principal),
        permissions=sorted(a for a in Action if access.may(principal, a)),
    )


def _check_role(role: Role, customer_id: str | None, field: str) -> None:
    """The role must fit the organisation: reseller roles for the reseller, else customer roles."""
    if role is Role.DISTRIBUTOR_ADMIN:
        raise ValidationFailed([FieldError(field, "is not a role of a reseller or a customer")])
    if customer_id is None and role not in RESELLER_ROLES:
        raise ValidationFailed([FieldError(field, "a reseller's user needs a reseller role")])
    if customer_id is not None and role not in CUSTOMER_ROLES:
        raise ValidationFailed([FieldError(field, "a customer's user needs a customer role")])


def _organisation_allowed(principal: Principal, reseller: str, customer_id: str | None) -> None:
    # A customer user knows its reseller exists (403), but not the reseller's other customers.
    if principal.is_customer_user and customer_id is None:
        raise Forbidden("a customer's admin manages the users of its own customer only")
    access.ensure_visible(principal, reseller, customer_id)


def _customer_exists(directory: Directory, reseller: str, customer_id: str | None) -> None:
    # An invitation for a customer the reseller does not have would make a user of nothing.
    if customer_id is None or directory.customers is None:
        return
    if directory.customers.find(reseller, customer_id) is None:
        raise ValidationFailed([FieldError("customerId", "is not a customer of this reseller")])


def list_users(
    directory: Directory,
    principal: Principal,
    reseller: str,
    *,
    page_size: int,
    continuation_token: str | None,
) -> Page[UserView]:
    """A page of the reseller's users; a customer's admin sees its customer's users only."""
    resellers.get(directory.resellers, reseller)
    equals = {"customer_id": principal.customer_id} if principal.is_customer_user else None
    page = directory.users.list(
        reseller, equals=equals, page_size=page_size, continuation_token=continuation_token
    )
    return Page[UserView](
        items=[present(u) for u in page.items], continuation_token=page.continuation_token
    )


def get_user(directory: Directory, principal: Principal, reseller: str, user_id: str) -> User:
    """One user inside the caller's world (NotFound otherwise)."""
    resellers.get(directory.resellers, reseller)
    user = directory.users.find(reseller, user_id) if _USER_ID.match(user_id) else None
    if user is None:
        raise NotFound("user not found")
    access.ensure_visible(principal, reseller, user.customer_id)
    return user


def invite(
    directory: Directory,
    principal: Principal,
    reseller_slug: str,
    command: UserInvite,
    *,
    valid_for: timedelta,
    public_base_url: str,
) -> InvitationSent:
    """Create (or re-invite) the user and e-mail a single-use invitation link."""
    reseller = resellers.get(directory.resellers, reseller_slug)
    _organisation_allowed(principal, reseller.slug, command.customer_id)
    _check_role(command.role, command.customer_id, "role")
    _customer_exists(directory, reseller.slug, command.customer_id)
    email = normalise_email(str(command.email))
    now = directory.clock.now()
    existing = directory.users.list(reseller.slug, equals={"email": email}, page_size=1).items
    if existing:
        user = existing[0]
        if user.status is not UserStatus.INVITED:
            raise Conflict(f"{email} is already a user of {reseller.name}")
        access.ensure_visible(principal, reseller.slug, user.customer_id)
        # A repeated invitation (a lost e-mail) keeps the user and may correct the role.
        user.role, user.customer_id, user.updated_at = command.role, command.customer_id, now
        user.display_name = command.display_name or user.display_name
        user = directory.users.update(user)
    else:
        user = _add_user(
            directory,
            User(
                reseller=reseller.slug,
                email=email,
                display_name=command.display_name,
                role=command.role,
                customer_id=command.customer_id,
                created_at=now,
                updated_at=now,
            ),
            reseller.name,
        )
    secret = secrets.token_urlsafe(32)
    invitation = directory.invitations.add(
        Invitation(
            reseller=reseller.slug,
            token_hash=token_hash(secret),
            user_id=user.id,
            email=email,
            role=command.role,
            customer_id=command.customer_id,
            invited_by=principal.user_id,
            created_at=now,
            expires_at=now + valid_for,
        )
    )
    # The token goes into the e-mail at send time only; the record keeps it until then.
    token = secret_placeholder("invitation")
    link = f"{public_base_url.rstrip('/')}/invitations/{token}"
    # Addressed to the invitee only: no event, no copies.
    who = notifications.recipients(reseller, None, addressed=[email])
    assert who is not None
    notifications.queue_email(
        directory.notifications,
        reseller.slug,
        Email(
            to=who.to,
            subject=f"You are invited to {reseller.settings.appearance.display_name}",
            text=(
                f"{principal.email} invites you to {reseller.settings.appearance.display_name} "
                f"as {command.role.value}.\n\n"
                f"Accept the invitation here (sign in with your platform account):\n{link}\n\n"
                f"The link can be used once and expires on "
                f"{invitation.expires_at:%Y-%m-%d %H:%M} UTC.\n"
                f"(API: POST /api/invitations/{token}/accept with your bearer token.)\n"
            ),
        ),
        secrets={"invitation": f"{reseller.slug}.{secret}"},
    )
    return InvitationSent(user=present(user), expires_at=invitation.expires_at)


def _add_user(directory: Directory, user: User, organisation: str) -> User:
    """Insert a user with the claim of its e-mail, in one transaction: of two racing invites
    of one address, one wins and the other gets a 409."""
    try:
        return directory.users.add(user, claims=user.claims())
    except ClaimTaken as exc:
        raise Conflict(f"{user.email} is already a user of {organisation}") from exc


def _parse_token(token: str) -> tuple[str, str]:
    slug, _, secret = token.partition(".")
    if not _SLUG.match(slug) or len(secret) < 20 or len(token) > 200:
        raise NotFound("invitation not found")
    return slug, token_hash(secret)


def accept_invitation(directory: Directory, token: str, caller: VerifiedToken) -> User:
    """Link the caller's sign-in to the invited user: once, before expiry, same e-mail.

    The writes go user (with the sign-in it gets), identity row, invitation (used), user
    (Active): a call that died between any two of them is finished by the caller repeating it.
    """
    slug, hashed = _parse_token(token)
    invitation = directory.invitations.find(slug, hashed)
    if invitation is None:
        raise NotFound("invitation not found")
    now = directory.clock.now()
    if caller.email is None or normalise_email(caller.email) != invitation.email:
        raise Forbidden("this invitation was sent to another e-mail address")
    if caller.kind is not SignInKind.PLATFORM:
        raise Forbidden("accept the invitation with your platform account (the primary sign-in)")
    user = directory.users.get(slug, invitation.user_id)
    if user.status is UserStatus.DISABLED:
        raise Forbidden("this user is disabled")
    if invitation.accepted_at is not None and not _finishing(user, caller):
        raise Conflict("this invitation has already been used")
    if invitation.accepted_at is None and now >= invitation.expires_at:
        raise Conflict("this invitation has expired; ask for a new one")
    # The user's ETag is the lock: of two racing accepts, one links its sign-in first.
    user = identity.link(directory, user, caller)
    if invitation.accepted_at is None:
        invitation.accepted_at = now
        directory.invitations.update(invitation)
    user.status = UserStatus.ACTIVE
    user.updated_at = now
    return directory.users.update(user)


def _finishing(user: User, caller: VerifiedToken) -> bool:
    # A repeat of an accept that stopped after using the invitation: same sign-in, not Active.
    held = user.linked(caller.kind)
    linked = held is not None and (held.issuer, held.subject) == (caller.issuer, caller.subject)
    return linked and user.status is UserStatus.INVITED


def update_user(
    directory: Directory,
    principal: Principal,
    reseller: str,
    user_id: str,
    etag: str | None,
    command: UserUpdate,
) -> User:
    """Change a user's role or status, if it is still at `etag` (when one is given)."""
    user = get_user(directory, principal, reseller, user_id)
    if user.id == principal.user_id:
        raise Conflict("you cannot change your own role or status")
    if command.role is not None:
        _check_role(command.role, user.customer_id, "role")
        user.role = command.role
    if command.status is not None:
        if command.status is UserStatus.INVITED:
            raise ValidationFailed([FieldError("status", "must be Active or Disabled")])
        if command.status is UserStatus.ACTIVE and not user.identities:
            raise Conflict("the user has not accepted its invitation yet")
        user.status = command.status
    user.etag = expected_version(user.etag, etag)
    user.updated_at = directory.clock.now()
    return directory.users.update(user)


def disable_user(
    directory: Directory, principal: Principal, reseller: str, user_id: str, etag: str | None
) -> User:
    """Disable a user (kept, with its history; it can no longer sign in)."""
    command = UserUpdate(status=UserStatus.DISABLED)
    return update_user(directory, principal, reseller, user_id, etag, command)


def ensure_user(
    directory: Directory,
    reseller: str,
    email: str,
    role: Role,
    *,
    customer_id: str | None = None,
    display_name: str | None = None,
    sign_ins: list[VerifiedToken] | None = None,
) -> User:
    """Create an active user with these sign-ins unless it exists (demo data, bootstrap)."""
    if reseller != DISTRIBUTOR:
        directory.resellers.get(RESELLER_PARTITION, reseller)
    email = normalise_email(email)
    found = directory.users.list(reseller, equals={"email": email}, page_size=1).items
    now = directory.clock.now()
    user = (
        found[0]
        if found
        else _add_user(
            directory,
            User(
                reseller=reseller,
                email=email,
                display_name=display_name,
                role=role,
                customer_id=customer_id,
                status=UserStatus.ACTIVE,
                created_at=now,
                updated_at=now,
            ),
            reseller,
        )
    )
    for token in sign_ins or []:
        # Also when already linked: link() writes an identity row a crash left missing.
        held = user.linked(token.kind)
        if held is None or (held.issuer, held.subject) == (token.issuer, token.subject):
            user = identity.link(directory, user, token)
    return user

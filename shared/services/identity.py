"""Sign-in: from a verified token to the user it is linked to, and linking more methods."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared.domain.customers import Customer
from shared.domain.errors import (
    Conflict,
    FieldError,
    Forbidden,
    Unauthenticated,
    ValidationFailed,
)
from shared.domain.identity import (
    DISTRIBUTOR,
    RESELLER_PARTITION,
    SIGN_IN_REQUIRED,
    Identity,
    Invitation,
    LinkedIdentity,
    Principal,
    Reseller,
    SignInKind,
    User,
    UserStatus,
    VerifiedToken,
    issuer_key,
    subject_key,
)
from shared.domain.notifications import Notification
from shared.ports import Clock, Repository, TokenVerifier

log = logging.getLogger(__name__)

_KIND_NAMES = {
    SignInKind.PLATFORM: "a platform account",
    SignInKind.WORK: "a work account",
    SignInKind.PERSONAL: "a personal Microsoft account",
}


@dataclass
class Directory:
    """The records sign-in, users and resellers work on."""

    resellers: Repository[Reseller]
    users: Repository[User]
    identities: Repository[Identity]
    invitations: Repository[Invitation]
    notifications: Repository[Notification]
    clock: Clock
    # Customers, to check that an invitation's organisation exists (None: not checked).
    customers: Repository[Customer] | None = None


@dataclass(frozen=True)
class SignIn:
    """A request's verified caller and, when its sign-in is linked to one, its user."""

    token: VerifiedToken
    principal: Principal | None


def authenticate(
    verifier: TokenVerifier,
    directory: Directory,
    *,
    authorization: str | None,
    easy_auth: str | None = None,
    easy_auth_enabled: bool = False,
) -> SignIn:
    """The caller of a request (Unauthenticated without valid credentials)."""
    if easy_auth_enabled and easy_auth:
        token = verifier.from_easy_auth(easy_auth)
    else:
        scheme, _, value = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated(SIGN_IN_REQUIRED)
        token = verifier.verify(value.strip())
    return SignIn(token, principal_of(directory, token))


def kind_allowed(reseller: Reseller, kind: SignInKind) -> None:
    """Forbidden when the reseller does not allow sign-in of this kind."""
    if kind not in reseller.settings.sign_in.allowed_methods:
        raise Forbidden(
            f"Signing in with {_KIND_NAMES[kind]} is not allowed for {reseller.name}; "
            "use another sign-in method."
        )


def principal_of(directory: Directory, token: VerifiedToken) -> Principal | None:
    """The user a verified token is linked to (one point read), or None if none is."""
    link = directory.identities.find(issuer_key(token.issuer), subject_key(token.subject))
    if link is None or link.issuer != token.issuer or link.subject != token.subject:
        return None
    user = directory.users.find(link.reseller, link.user_id)
    if user is None:
        return None
    if user.status is UserStatus.INVITED:
        # Its acceptance stopped half-way (the sign-in was linked, the rest not written).
        raise Forbidden(
            "Accepting your invitation did not finish; open the invitation link again to "
            "complete it, or ask an Account Manager for a new invitation."
        )
    if user.status is not UserStatus.ACTIVE:
        raise Forbidden("This user is disabled; ask an Account Manager to enable it.")
    if user.reseller != DISTRIBUTOR:
        reseller = directory.resellers.find(RESELLER_PARTITION, user.reseller)
        if reseller is None:
            raise Forbidden("This user's reseller no longer exists.")
        kind_allowed(reseller, token.kind)
    return Principal(
        user_id=user.id,
        reseller=user.reseller,
        customer_id=user.customer_id,
        role=user.role,
        email=user.email,
        kind=token.kind,
    )


def require_user(sign_in: SignIn) -> Principal:
    """The signed-in user, or Forbidden for a valid sign-in that no user owns yet."""
    if sign_in.principal is None:
        raise Forbidden(
            "This sign-in is not linked to a user of the platform; accept an invitation first."
        )
    return sign_in.principal


def link(directory: Directory, user: User, token: VerifiedToken) -> User:
    """Link a verified sign-in to `user` (Conflict if it already belongs to someone).

    Two writes in two tables, in an order a repeat can always finish: the user first, with the
    identity it is about to get, then the (issuer, subject) row that sign-in reads. A call that
    died between them is completed (the missing row written) by calling again.
    """
    keys = issuer_key(token.issuer), subject_key(token.subject)
    existing = directory.identities.find(*keys)
    if existing is not None and (existing.user_id, existing.reseller) != (user.id, user.reseller):
        raise Conflict("this sign-in is already linked to another user")
    held = user.linked(token.kind)
    if held is not None and (held.issuer, held.subject) != (token.issuer, token.subject):
        raise Conflict(f"a {token.kind.value} sign-in is already linked to this user")
    now = directory.clock.now()
    if held is None:
        user.identities = [
            *user.identities,
            LinkedIdentity(
                kind=token.kind, issuer=token.issuer, subject=token.subject, linked_at=now
            ),
        ]
        user.updated_at = now
        user = directory.users.update(user)
    if existing is None:
        try:
            directory.identities.add(
                Identity(
                    issuer_key=keys[0],
                    subject_key=keys[1],
                    issuer=token.issuer,
                    subject=token.subject,
                    kind=token.kind,
                    reseller=user.reseller,
                    user_id=user.id,
                    created_at=now,
                )
            )
        except Conflict:
            # Written meanwhile: by a repeat of this call (fine) or for another user (refused).
            raced = directory.identities.find(*keys)
            if raced is None or (raced.user_id, raced.reseller) != (user.id, user.reseller):
                raise
    return user


def link_another_method(
    directory: Directory, verifier: TokenVerifier, principal: Principal, raw_token: str
) -> User:
    """Link a further sign-in method (proved by its own token) to the caller's user."""
    try:
        token = verifier.verify(raw_token)
    except Unauthenticated:
        raise ValidationFailed(
            [FieldError("token", "is not a valid token of a trusted issuer")]
        ) from None
    user = directory.users.get(principal.reseller, principal.user_id)
    if principal.reseller != DISTRIBUTOR:
        kind_allowed(directory.resellers.get(RESELLER_PARTITION, principal.reseller), token.kind)
    return link(directory, user, token)

"""Users and invitations; `GET /me`; linking further sign-in methods."""

from __future__ import annotations

from datetime import timedelta

import azure.functions as func

from functions._http import Call, PageQuery, Reply, http
from shared.bootstrap import container
from shared.domain.identity import Command
from shared.domain.model import Page
from shared.services import identity, users
from shared.services.access import IDENTIFIED, Action, allow
from shared.services.users import InvitationSent, Me, UserInvite, UserUpdate, UserView

bp = func.Blueprint()
TAGS = ("users",)


class LinkSignIn(Command):
    """A token of the sign-in method to link (the caller proves it owns that account too)."""

    token: str


@http(
    bp,
    "me",
    ["GET"],
    name="http_me",
    summary="The signed-in user, its role and what it may do.",
    response=Me,
    tags=TAGS,
    access=allow(Action.SELF),
)
def me(call: Call) -> Me:
    """The caller's profile."""
    return users.me(container().directory, call.principal)


@http(
    bp,
    "me/sign-ins",
    ["POST"],
    name="http_link_sign_in",
    summary="Link a further sign-in method (work or personal account) to the caller.",
    body=LinkSignIn,
    response=UserView,
    tags=TAGS,
    errors=(400, 409),
    access=allow(Action.SELF),
)
def link_sign_in(call: Call) -> UserView:
    """Verify the other method's token and link it."""
    c = container()
    raw = call.body(LinkSignIn).token
    user = identity.link_another_method(c.directory, c.token_verifier, call.principal, raw)
    return users.present(user)


@http(
    bp,
    "resellers/{r}/users",
    ["GET"],
    name="http_list_users",
    summary="The reseller's users (a customer's admin: its customer's users).",
    query=PageQuery,
    response=Page[UserView],
    tags=TAGS,
    access=allow(Action.READ_USERS),
)
def list_users(call: Call) -> Page[UserView]:
    """A page of users."""
    q = call.query(PageQuery)
    return users.list_users(
        container().directory,
        call.principal,
        call.route["r"],
        page_size=q.page_size,
        continuation_token=q.continuation_token,
    )


@http(
    bp,
    "resellers/{r}/users",
    ["POST"],
    name="http_invite_user",
    summary="Invite a user by e-mail with a role and an organisation.",
    body=UserInvite,
    response=InvitationSent,
    status=201,
    tags=TAGS,
    errors=(409,),
    access=allow(Action.MANAGE_USERS),
    idempotent=True,
)
def invite_user(call: Call) -> Reply:
    """Create the user (Invited) and e-mail the invitation."""
    c = container()
    sent = users.invite(
        c.directory,
        call.principal,
        call.route["r"],
        call.body(UserInvite),
        valid_for=timedelta(days=c.settings.invitation_valid_days),
        public_base_url=c.settings.public_base_url,
    )
    location = f"/api/resellers/{sent.user.reseller}/users/{sent.user.id}"
    return Reply(sent, status=201, headers={"Location": location})


@http(
    bp,
    "resellers/{r}/users/{u}",
    ["GET"],
    name="http_get_user",
    summary="One user, with the ETag a change needs.",
    response=UserView,
    tags=TAGS,
    access=allow(Action.READ_USERS),
)
def get_user(call: Call) -> Reply:
    """One user."""
    user = users.get_user(container().directory, call.principal, call.route["r"], call.route["u"])
    return Reply(users.present(user), etag=user.etag)


@http(
    bp,
    "resellers/{r}/users/{u}",
    ["PATCH"],
    name="http_update_user",
    summary="Change a user's role or status (If-Match required).",
    body=UserUpdate,
    response=UserView,
    tags=TAGS,
    errors=(409, 412, 428),
    access=allow(Action.MANAGE_USERS),
)
def update_user(call: Call) -> Reply:
    """Change role or status."""
    etag = call.if_match()
    user = users.update_user(
        container().directory,
        call.principal,
        call.route["r"],
        call.route["u"],
        etag,
        call.body(UserUpdate),
    )
    return Reply(users.present(user), etag=user.etag)


@http(
    bp,
    "resellers/{r}/users/{u}",
    ["DELETE"],
    name="http_disable_user",
    summary="Disable a user (kept with its history; If-Match honoured).",
    response=UserView,
    tags=TAGS,
    errors=(409, 412),
    access=allow(Action.MANAGE_USERS),
)
def disable_user(call: Call) -> Reply:
    """Disable the user."""
    user = users.disable_user(
        container().directory,
        call.principal,
        call.route["r"],
        call.route["u"],
        call.if_match_optional(),
    )
    return Reply(users.present(user), etag=user.etag)


@http(
    bp,
    "invitations/{token}/accept",
    ["POST"],
    name="http_accept_invitation",
    summary="Accept an invitation: links the caller's platform account to the invited user.",
    response=UserView,
    tags=TAGS,
    errors=(409,),
    access=IDENTIFIED,
)
def accept_invitation(call: Call) -> Reply:
    """Accept once, before expiry, with the invited e-mail."""
    user = users.accept_invitation(container().directory, call.route["token"], call.token)
    return Reply(users.present(user), etag=user.etag)

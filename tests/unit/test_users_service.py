"""Invitations and users: single use, expiry, the invited address only, roles fit organisations."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from shared.domain.errors import Conflict, Forbidden, NotFound, ValidationFailed
from shared.domain.identity import DISTRIBUTOR, Principal, Role, SignInKind, UserStatus
from shared.domain.model import Page
from shared.services import identity, users
from shared.services.users import UserInvite, UserUpdate
from tests.fakes import (
    Crash,
    FakeClock,
    TestIssuer,
    WriteBudget,
    crashing_directory,
    fake_directory,
    onboard,
)

CUSTOMER = "01JCXSTA00000000000000000A"
EMAIL = "jana@customer.example"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def directory(clock):
    d = fake_directory(clock)
    onboard(d.resellers, clock, "demo", name="Demo")
    return d


@pytest.fixture
def owner(directory) -> Principal:
    user = users.ensure_user(
        directory,
        "demo",
        "owner@demo.example",
        Role.ACCOUNT_MANAGER,
        sign_ins=[TestIssuer().sign_in("owner@demo.example")],
    )
    return Principal(user.id, "demo", None, Role.ACCOUNT_MANAGER, user.email, SignInKind.PLATFORM)


def invite(directory, owner, email=EMAIL, role=Role.CUSTOMER_ADMIN, customer=CUSTOMER, days=7):
    users.invite(
        directory,
        owner,
        "demo",
        UserInvite(email=email, role=role, customer_id=customer),
        valid_for=timedelta(days=days),
        public_base_url="https://portal.test",
    )
    mails = list(directory.notifications.rows.values())
    return re.search(r"/invitations/(\S+)", mails[-1].render().text).group(1)


def test_invitation_is_accepted_once(directory, owner):
    token = invite(directory, owner)
    user = users.accept_invitation(directory, token, TestIssuer().sign_in(EMAIL))
    assert (user.status, user.customer_id, user.role) == (
        UserStatus.ACTIVE,
        CUSTOMER,
        Role.CUSTOMER_ADMIN,
    )
    assert identity.principal_of(directory, TestIssuer().sign_in(EMAIL)).user_id == user.id
    with pytest.raises(Conflict, match="already been used"):
        users.accept_invitation(directory, token, TestIssuer().sign_in(EMAIL))


def test_expired_invitation_fails(directory, owner, clock):
    token = invite(directory, owner, days=1)
    clock.advance(days=1, seconds=1)
    with pytest.raises(Conflict, match="expired"):
        users.accept_invitation(directory, token, TestIssuer().sign_in(EMAIL))


def test_invitation_for_another_email_fails(directory, owner):
    token = invite(directory, owner)
    with pytest.raises(Forbidden, match="another e-mail"):
        users.accept_invitation(directory, token, TestIssuer().sign_in("mallory@evil.example"))
    # ...and is still usable by the invited person.
    assert users.accept_invitation(directory, token, TestIssuer().sign_in(EMAIL)).status is (
        UserStatus.ACTIVE
    )


def test_invitation_is_accepted_with_the_platform_account_only(directory, owner):
    token = invite(directory, owner)
    with pytest.raises(Forbidden, match="platform account"):
        users.accept_invitation(directory, token, TestIssuer().sign_in(EMAIL, SignInKind.WORK))


@pytest.mark.parametrize("token", ["", "demo", "demo.short", "other." + "x" * 43, "x" * 300])
def test_unknown_or_malformed_invitation_tokens_are_not_found(directory, token):
    with pytest.raises(NotFound):
        users.accept_invitation(directory, token, TestIssuer().sign_in(EMAIL))


def test_a_tampered_token_of_a_real_invitation_is_not_found(directory, owner):
    token = invite(directory, owner)
    with pytest.raises(NotFound):
        users.accept_invitation(directory, token[:-2] + "xx", TestIssuer().sign_in(EMAIL))


def test_reinviting_a_pending_person_sends_a_new_link_and_keeps_one_user(directory, owner):
    first = invite(directory, owner)
    second = invite(directory, owner)
    assert first != second
    assert len([u for u in directory.users.rows.values() if u.email == EMAIL]) == 1


def test_inviting_an_active_user_again_is_a_conflict(directory, owner):
    token = invite(directory, owner)
    users.accept_invitation(directory, token, TestIssuer().sign_in(EMAIL))
    with pytest.raises(Conflict, match="already a user"):
        invite(directory, owner)


@pytest.mark.parametrize(
    ("role", "customer"),
    [
        (Role.SALES, CUSTOMER),
        (Role.CUSTOMER_READER, None),
        (Role.DISTRIBUTOR_ADMIN, None),
    ],
)
def test_role_must_fit_the_organisation(directory, owner, role, customer):
    with pytest.raises(ValidationFailed):
        invite(directory, owner, role=role, customer=customer)


def test_nobody_changes_its_own_role(directory, owner):
    me = directory.users.get("demo", owner.user_id)
    with pytest.raises(Conflict):
        users.update_user(directory, owner, "demo", me.id, me.etag, UserUpdate(role=Role.SALES))


def test_distributor_admin_is_seeded_outside_every_reseller(directory):
    admin = users.ensure_user(
        directory,
        DISTRIBUTOR,
        "Admin@Distributor.example",
        Role.DISTRIBUTOR_ADMIN,
        sign_ins=[TestIssuer().sign_in("admin@distributor.example")],
    )
    again = users.ensure_user(
        directory,
        DISTRIBUTOR,
        "admin@distributor.example",
        Role.DISTRIBUTOR_ADMIN,
        sign_ins=[TestIssuer().sign_in("admin@distributor.example")],
    )
    assert again.id == admin.id and again.etag == admin.etag
    principal = identity.principal_of(directory, TestIssuer().sign_in("admin@distributor.example"))
    assert principal is not None and principal.is_distributor


def test_an_invitation_for_a_customer_the_reseller_does_not_have_names_the_field(directory, owner):
    import dataclasses

    from shared.domain.customers import Address, Contact, Customer, CustomerStatus
    from tests.fakes import InMemoryRepository

    customers = InMemoryRepository[Customer](lambda x: (x.reseller, x.id))
    checked = dataclasses.replace(directory, customers=customers)
    with pytest.raises(ValidationFailed) as info:
        invite(checked, owner)
    assert [e.field for e in info.value.errors] == ["customerId"]
    assert not any(u.email == EMAIL for u in directory.users.rows.values())

    customers.add(
        Customer(
            reseller="demo",
            id=CUSTOMER,
            name="Alfa s.r.o.",
            company_id="25596641",
            address=Address(country="CZ", street="Ulice 1", city="Praha", postcode="110 00"),
            contact=Contact(first_name="Jana", last_name="Nová", email="jana@a.example"),
            domain="alfa.onmicrosoft.com",
            tenant_id=None,
            status=CustomerStatus.ACTIVE,
        )
    )
    assert invite(checked, owner)


# --- a crash between writes: the caller's repeat finishes what the first call started --------

ACCEPT_WRITES = 4  # user (with the sign-in), identity row, invitation (used), user (Active)


@pytest.mark.parametrize("writes_before_crash", range(ACCEPT_WRITES))
def test_accept_that_crashed_between_writes_is_finished_by_accepting_again(
    directory, owner, writes_before_crash
):
    token = invite(directory, owner)
    caller = TestIssuer().sign_in(EMAIL)
    dying = crashing_directory(directory, WriteBudget(writes_before_crash))
    with pytest.raises(Crash):
        users.accept_invitation(dying, token, caller)

    user = users.accept_invitation(directory, token, caller)

    assert user.status is UserStatus.ACTIVE
    assert [(i.issuer, i.subject) for i in user.identities] == [(caller.issuer, caller.subject)]
    assert identity.principal_of(directory, caller).user_id == user.id
    [invitation] = directory.invitations.rows.values()
    assert invitation.accepted_at is not None
    with pytest.raises(Conflict, match="already been used"):
        users.accept_invitation(directory, token, caller)


def test_a_user_whose_accept_stopped_half_way_is_told_to_open_the_link_again(directory, owner):
    token = invite(directory, owner)
    caller = TestIssuer().sign_in(EMAIL)
    with pytest.raises(Crash):  # the sign-in is linked, the user not yet Active
        users.accept_invitation(crashing_directory(directory, WriteBudget(2)), token, caller)
    with pytest.raises(Forbidden, match="open the invitation link again") as refused:
        identity.principal_of(directory, caller)
    assert "disabled" not in str(refused.value)


def test_link_that_crashed_before_its_identity_row_is_repaired_by_linking_again(directory, owner):
    work = TestIssuer().sign_in("owner@work.example", SignInKind.WORK)
    user = directory.users.get("demo", owner.user_id)
    with pytest.raises(Crash):
        identity.link(crashing_directory(directory, WriteBudget(1)), user, work)
    assert identity.principal_of(directory, work) is None  # the row sign-in reads is missing

    identity.link(directory, directory.users.get("demo", owner.user_id), work)

    assert identity.principal_of(directory, work).user_id == owner.user_id
    assert len(directory.users.get("demo", owner.user_id).identities) == 2


def test_a_sign_in_of_another_user_is_not_linked_by_a_repair(directory, owner):
    token = invite(directory, owner)
    users.accept_invitation(directory, token, TestIssuer().sign_in(EMAIL))
    theirs = TestIssuer().sign_in(EMAIL)
    with pytest.raises(Conflict, match="another user"):
        identity.link(directory, directory.users.get("demo", owner.user_id), theirs)


def test_two_invites_of_one_address_racing_past_the_check_end_as_one_user_and_a_409(
    directory, owner
):
    directory.users.list = lambda *a, **k: Page(items=[])  # both looked before either wrote
    command = UserInvite(email="Racer@Demo.example", role=Role.SALES)
    users.invite(directory, owner, "demo", command, valid_for=timedelta(days=7), public_base_url="")
    with pytest.raises(Conflict, match="already a user"):
        users.invite(
            directory, owner, "demo", command, valid_for=timedelta(days=7), public_base_url=""
        )
    racers = [u for u in directory.users.rows.values() if u.email == "racer@demo.example"]
    assert len(racers) == 1

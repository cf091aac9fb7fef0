"""Secrets in e-mail: a tenant admin's password reaches only the people who need it, and no
secret (password, invitation token) stays at rest in the Notifications table once sent."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from shared.domain.customers import CustomerCreate, CustomerStatus
from shared.domain.identity import Principal, Role, SignInKind
from shared.domain.notifications import NotificationMessage, NotificationStatus
from shared.services import customers, notifications, users
from shared.services.users import UserInvite
from tests.customer_bodies import new_customer_body
from tests.fakes import FakeMailer, fake_directory, onboard
from tests.unit.test_customers import OWNER, World


def _with_support_and_extra_recipients(w: World) -> None:
    reseller = w.resellers.get("reseller", "demo")
    reseller.settings.appearance.support_email = "support@demo.example"
    reseller.settings.notifications.extra_recipients = ["boss@demo.example"]
    w.resellers.update(reseller)


def test_the_admin_password_goes_to_the_contact_and_the_requester_only():
    w = World()
    _with_support_and_extra_recipients(w)
    customer = w.create()
    customers.provision(w.book, w.pc, w.mailer, w.message(customer))
    [(_, email)] = w.mailer.sent
    [tenant_id] = w.pc.tenants
    assert w.pc.passwords[tenant_id] in email.text
    assert email.to == ["jana@alfanova.example"] and email.cc == ["owner@demo.example"]


def test_no_sign_in_details_from_partner_center_queues_the_reset_notice_before_active():
    w = World()
    w.pc.omit_credentials = True
    customer = w.create()
    customers.provision(w.book, w.pc, w.mailer, w.message(customer))
    assert w.repo.get("demo", customer.id).status is CustomerStatus.ACTIVE
    assert w.mailer.sent == []
    [note] = w.notifications.rows.values()
    assert note.id == customers.reset_notice_id(customer)
    assert "Reset the admin's password" in note.email.text
    assert "returned no sign-in details" in note.email.text
    [queued] = w.notifications.sent
    assert queued.body["id"] == note.id
    # A redelivery queues nothing more.
    customers.provision(w.book, w.pc, w.mailer, w.message(customer))
    assert len(w.notifications.rows) == 1 and len(w.notifications.sent) == 1


def test_the_admin_password_is_in_no_notification_row_after_provisioning():
    w = World()
    w.create()  # an unrelated customer
    customer = customers.create(
        w.book, w.pc, OWNER, "demo", CustomerCreate.model_validate(new_customer_body("beta"))
    )
    customers.provision(w.book, w.pc, w.mailer, w.message(customer))
    [password] = w.pc.passwords.values()
    rows = [r.model_dump_json() for r in w.notifications.rows.values()]
    rows += [r.model_dump_json() for r in w.repo.rows.values()]
    assert all(password not in row for row in rows)


# --- invitations ---------------------------------------------------------------------------------


def _invite():
    d = fake_directory()
    onboard(d.resellers, d.clock, "demo")
    owner = users.ensure_user(d, "demo", "owner@demo.example", Role.ACCOUNT_MANAGER)
    principal = Principal(
        owner.id, "demo", None, Role.ACCOUNT_MANAGER, owner.email, SignInKind.PLATFORM
    )
    users.invite(
        d,
        principal,
        "demo",
        UserInvite(email="new@demo.example", role=Role.SALES),
        valid_for=timedelta(days=7),
        public_base_url="https://portal.test",
    )
    [record] = d.notifications.rows.values()
    return d, record


def test_an_invitation_link_is_in_no_notification_row_once_sent():
    d, record = _invite()
    assert re.search(r"\{\{secret:invitation\}\}", record.email.text)
    mailer = FakeMailer()
    notifications.deliver(d.notifications, mailer, NotificationMessage(scope="demo", id=record.id))
    [(_, sent)] = mailer.sent
    token = re.search(r"/invitations/(\S+)", sent.text).group(1)  # type: ignore[union-attr]
    secret = token.split(".", 1)[1]
    assert len(secret) > 20 and sent.text.count(token) == 2
    stored = d.notifications.get("demo", record.id)
    assert stored.status is NotificationStatus.SENT
    for row in d.notifications.rows.values():
        assert secret not in row.model_dump_json()


def test_an_invitation_given_up_keeps_no_secret_either():
    d, record = _invite()
    secret = next(iter(record.secrets.values()))
    notifications.give_up(d.notifications, NotificationMessage(scope="demo", id=record.id), "x")
    stored = d.notifications.get("demo", record.id)
    assert stored.status is NotificationStatus.FAILED and stored.secrets == {}
    assert secret not in stored.model_dump_json()


def test_a_notification_that_is_no_longer_pending_refuses_a_secret():
    _, record = _invite()
    with pytest.raises(ValueError, match="no secret"):
        record.status = NotificationStatus.SENT

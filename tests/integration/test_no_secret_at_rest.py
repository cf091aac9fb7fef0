"""No secret at rest in Azurite: after the invitation e-mail went out, no Notifications row (nor
its outbox row) holds the token; a Resellers row of the one-id era still loads."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from shared.domain.identity import Principal, Role, SignInKind
from shared.domain.notifications import NotificationMessage, NotificationStatus
from shared.domain.outbox import Queue
from shared.services import notifications, users
from shared.services.users import UserInvite
from tests.fakes import FakeMailer, onboard

pytestmark = pytest.mark.integration


def test_after_the_invitation_is_sent_no_notification_row_holds_its_token(container):
    c = container
    c.queues.queue(Queue.NOTIFICATIONS.value).clear_messages()
    onboard(c.resellers, c.clock, "demo")
    owner = users.ensure_user(c.directory, "demo", "owner@demo.example", Role.ACCOUNT_MANAGER)
    principal = Principal(
        owner.id, "demo", None, Role.ACCOUNT_MANAGER, owner.email, SignInKind.PLATFORM
    )
    users.invite(
        c.directory,
        principal,
        "demo",
        UserInvite(email="new@demo.example", role=Role.SALES),
        valid_for=timedelta(days=7),
        public_base_url="https://portal.test",
    )
    [record] = list(c.notifications.iterate("demo"))
    mailer = FakeMailer()
    notifications.deliver(c.notifications, mailer, NotificationMessage(scope="demo", id=record.id))
    [(_, sent)] = mailer.sent
    secret = re.search(r"/invitations/demo\.(\S+)", sent.text).group(1)  # type: ignore[union-attr]
    assert c.notifications.get("demo", record.id).status is NotificationStatus.SENT
    rows = list(c.store.table("Notifications").list_entities())
    assert rows and all(secret not in str(dict(row)) for row in rows)


def test_a_reseller_row_with_the_old_single_partner_id_loads(container):
    c = container
    onboard(c.resellers, c.clock, "demo")
    table = c.store.table("Resellers")
    entity = dict(table.get_entity("reseller", "demo"))
    for prop in ("PartnerCenterTenantId", "MpnId"):
        entity.pop(prop)
    entity["PartnerCenterId"] = "3F2C6A1E-8D4B-4C1A-9B7E-2A5D0C9E4F10"
    table.upsert_entity(entity, mode="replace")
    reseller = c.resellers.get("reseller", "demo")
    assert reseller.partner_center_tenant_id == "3f2c6a1e-8d4b-4c1a-9b7e-2a5d0c9e4f10"
    assert reseller.mpn_id is None

"""Housekeeping deletes the reminders' claim rows (Notifications, `~claim~reminder~…` in each
reseller's partition) once their day has passed by RETENTION_DAYS, and nothing else (Azurite)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.domain.claims import Claim
from shared.domain.notifications import Email
from shared.services import housekeeping, notifications, reminders
from tests.fakes import onboard

pytestmark = pytest.mark.integration


def _told(container, slug: str, nid: str, *claims: Claim) -> None:
    email = Email(to=["owner@demo.example"], subject="Reminders", text="t")
    notifications.queue_email(
        container.notifications, slug, email, notification_id=nid, claims=claims
    )


def test_reminder_claims_older_than_retention_are_deleted_and_the_rest_stay(container):
    onboard(container.resellers, container.clock, "demo")
    onboard(container.resellers, container.clock, "other")
    h = container.housekeeping
    today = container.clock.now().date()
    long_ago = today - h.retention - timedelta(days=1)
    recently = today - timedelta(days=3)

    def reminder(sub: str, day) -> Claim:
        return Claim(reminders.CLAIM_KIND, f"RenewalDue:CUST1:{sub}:{day.isoformat()}")

    old_demo = [reminder(f"s{i}", long_ago) for i in range(3)]
    kept_demo = [reminder("s9", recently), reminder("s8", today + timedelta(days=5))]
    unrelated = Claim("domain", "contoso.onmicrosoft.com")  # not a reminder: never touched
    _told(container, "demo", "digest-1", *old_demo, unrelated)
    _told(container, "demo", "digest-2", *kept_demo)
    old_other = reminder("s1", long_ago)
    _told(container, "other", "digest-3", old_other)

    purged = housekeeping.purge(h)

    assert purged.reminder_claims == 4
    repo = container.notifications
    assert [c for c in old_demo if repo.claim_owner("demo", c)] == []
    assert repo.claim_owner("other", old_other) is None
    assert [repo.claim_owner("demo", c) for c in kept_demo] == ["digest-2", "digest-2"]
    assert repo.claim_owner("demo", unrelated) == "digest-1"
    assert housekeeping.purge(h).reminder_claims == 0  # nothing more on the next pass

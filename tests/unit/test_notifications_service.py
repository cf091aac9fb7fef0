"""The notifications service: queue once, deliver once, record failures."""

from __future__ import annotations

import pytest

from shared.domain.notifications import Email, Notification, NotificationMessage, NotificationStatus
from shared.domain.outbox import Queue
from shared.services import notifications
from tests.fakes import FakeMailer, InMemoryRepository


@pytest.fixture
def repo() -> InMemoryRepository[Notification]:
    return InMemoryRepository(lambda n: (n.scope, n.id))


def email() -> Email:
    return Email(to=["jana@customer.example"], subject="Welcome", text="Hello")


def test_queue_email_writes_record_and_outbox_message_together(repo):
    record = notifications.queue_email(repo, "demo", email())
    assert repo.get("demo", record.id).status is NotificationStatus.PENDING
    [message] = repo.sent
    assert message.queue is Queue.NOTIFICATIONS
    assert message.body == {"scope": "demo", "id": record.id}


def test_delivering_the_same_message_twice_sends_one_email(repo):
    record = notifications.queue_email(repo, "demo", email())
    mailer = FakeMailer()
    msg = NotificationMessage.model_validate(repo.sent[0].payload())
    notifications.deliver(repo, mailer, msg)
    notifications.deliver(repo, mailer, msg)
    assert [mid for mid, _ in mailer.sent] == [record.id]
    stored = repo.get("demo", record.id)
    assert stored.status is NotificationStatus.SENT
    assert stored.sent_at is not None


def test_give_up_marks_failed_with_reason_and_later_delivery_does_nothing(repo):
    record = notifications.queue_email(repo, "demo", email())
    msg = NotificationMessage(scope="demo", id=record.id)
    notifications.give_up(repo, msg, "SMTP refused")
    mailer = FakeMailer()
    notifications.deliver(repo, mailer, msg)
    stored = repo.get("demo", record.id)
    assert stored.status is NotificationStatus.FAILED
    assert stored.error == "SMTP refused"
    assert mailer.sent == []


def test_failed_send_leaves_notification_pending_for_retry(repo):
    record = notifications.queue_email(repo, "demo", email())
    mailer = FakeMailer()
    mailer.fail_with = ConnectionError("down")
    with pytest.raises(ConnectionError):
        notifications.deliver(repo, mailer, NotificationMessage(scope="demo", id=record.id))
    assert repo.get("demo", record.id).status is NotificationStatus.PENDING

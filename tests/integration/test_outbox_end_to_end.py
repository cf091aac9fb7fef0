"""Nothing is lost: a writer killed between commit and send still gets its e-mail out, once.

Through the real function_app on the local host, Azurite and a real SMTP server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from localdev.azurite import Azurite, free_port
from localdev.funchost.config import quiet_timers
from localdev.funchost.process import HostProcess
from shared.adapters.tables.repository import OUTBOX_PREFIX
from shared.bootstrap import Container
from shared.config import Settings
from shared.domain.notifications import NotificationStatus
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


class Inbox:
    """An SMTP handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append(envelope.content)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


WRITER = textwrap.dedent(
    """
    import os, signal
    from shared.adapters.tables.repository import OutboxSink
    from shared.bootstrap import Container
    from shared.domain.notifications import Email
    from shared.services import notifications

    class KilledBeforeSending(OutboxSink):
        def dispatch(self, table, partition, rows):
            os.kill(os.getpid(), signal.SIGKILL)

    c = Container()
    c.__dict__["outbox"] = KilledBeforeSending()
    record = notifications.queue_email(
        c.notifications, "demo",
        Email(to=["jana@customer.example"], subject="Welcome", text="Your tenant is ready."),
    )
    print("not reached", record.id)
    """
)


def test_killed_writer_message_is_swept_delivered_once_even_when_sent_twice(
    azurite: Azurite, table_prefix: str, smtp, tmp_path
):
    inbox, smtp_port = smtp
    env = {
        **quiet_timers(),
        **os.environ,
        # The test's SMTP server speaks plain text, which only a local environment may use.
        "APP_ENVIRONMENT": "local",
        "AzureWebJobsStorage": azurite.connection_string,
        "TABLE_PREFIX": table_prefix,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        "OUTBOX_SWEEP_SCHEDULE": "*/1 * * * * *",
        "HOUSEKEEPING_SCHEDULE": "0 0 0 1 1 *",
        "REMINDER_SCHEDULE": "0 0 0 1 1 *",
        "USAGE_IMPORT_SCHEDULE": "0 0 0 1 1 *",
        "SYNC_SCHEDULE": "0 0 0 1 1 *",
        "CATALOG_IMPORT_SCHEDULE": "0 0 0 1 1 *",
        "OUTBOX_MIN_AGE_SECONDS": "1",
    }
    env.pop("MAIL_DROP_DIR", None)
    settings = Settings(
        **{
            k: v
            for k, v in env.items()
            if k
            in {"APP_ENVIRONMENT", "AzureWebJobsStorage", "TABLE_PREFIX", "SMTP_HOST", "SMTP_PORT"}
        }
    )
    c = Container(settings)
    c.queues.queue("notifications").clear_messages()

    writer = subprocess.run(
        [sys.executable, "-c", WRITER],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert writer.returncode == -9, writer.stderr
    [outbox_row] = list(
        c.store.table("Notifications").query_entities(
            "RowKey ge @p", parameters={"p": OUTBOX_PREFIX}
        )
    )
    [record] = list(c.notifications.iterate("demo"))
    assert record.status is NotificationStatus.PENDING

    host = HostProcess(
        cwd=ROOT,
        env=env,
        settings=tmp_path / "none.json",
        host_json=ROOT / "tests" / "apps" / "host.json",
    )
    host.start(timeout=60)
    try:
        wait_until(lambda: len(inbox.messages) >= 1, what="the swept e-mail")
        wait_until(
            lambda: c.notifications.get("demo", record.id).status is NotificationStatus.SENT,
            what="the record to be Sent",
        )

        # The same message arrives a second time (e.g. sent by two sweepers).
        again = QueueClient.from_connection_string(
            azurite.connection_string,
            "notifications",
            message_encode_policy=TextBase64EncodePolicy(),
        )
        again.send_message(outbox_row["Body"])
        wait_until(
            lambda: again.get_queue_properties().approximate_message_count == 0,
            what="the duplicate to be consumed",
        )
        time.sleep(2)  # let the duplicate's invocation finish
    finally:
        host.stop()

    assert len(inbox.messages) == 1, host.logs()
    assert b"Your tenant is ready." in inbox.messages[0]
    assert json.loads(outbox_row["Body"])["id"] == record.id
    remaining = list(
        c.store.table("Notifications").query_entities(
            "RowKey ge @p", parameters={"p": OUTBOX_PREFIX}
        )
    )
    assert remaining == []

"""SMTP refuses to send in clear text outside APP_ENVIRONMENT=local (real SMTP servers)."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from localdev.azurite import free_port
from localdev.partner_center_sim.certs import ensure_tls_files
from shared.adapters import mail
from shared.adapters.mail import SmtpMailer
from shared.config import Settings
from shared.domain.errors import UpstreamRejected
from shared.domain.notifications import Email

pytestmark = pytest.mark.integration
EMAIL = Email(to=["jana@customer.example"], subject="Welcome", text="temporary password: s3cret")


class Inbox:
    """Keeps what the server received and whether the session was encrypted."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes, bool]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append((envelope.content, session.ssl is not None))
        return "250 OK"


def _settings(environment: str, port: int) -> Settings:
    return Settings(
        APP_ENVIRONMENT=environment,
        AzureWebJobsStorage="UseDevelopmentStorage=true",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=port,
    )


@pytest.fixture
def plain_server() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.mark.parametrize("environment", ["test", "production"])
def test_a_server_without_starttls_is_refused_outside_local(plain_server, environment):
    inbox, port = plain_server
    with pytest.raises(UpstreamRejected, match="STARTTLS"):
        SmtpMailer(_settings(environment, port)).send(EMAIL, message_id="m1")
    assert inbox.messages == []


def test_a_local_environment_may_use_a_plain_test_server(plain_server):
    inbox, port = plain_server
    SmtpMailer(_settings("local", port)).send(EMAIL, message_id="m1")
    [(_, encrypted)] = inbox.messages
    assert not encrypted


def test_starttls_is_used_when_the_server_offers_it(tmp_path: Path):
    files = ensure_tls_files(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(files.server_cert, files.server_key)
    inbox, port = Inbox(), free_port()
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port, tls_context=server_tls, require_starttls=True
    )
    controller.start()
    try:
        client_tls = ssl.create_default_context(cafile=str(files.ca_cert))
        SmtpMailer(_settings("production", port), tls_context=client_tls).send(
            EMAIL, message_id="m1"
        )
    finally:
        controller.stop()
    [(content, encrypted)] = inbox.messages
    assert encrypted and b"s3cret" in content


def test_port_465_speaks_implicit_tls(monkeypatch):
    opened: list[tuple[str, int]] = []

    class ImplicitTls:
        def __init__(self, host: str, port: int, **kwargs: Any) -> None:
            assert isinstance(kwargs["context"], ssl.SSLContext)
            opened.append((host, port))

        def __enter__(self) -> ImplicitTls:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def send_message(self, message: Any) -> None:
            pass

    def no_plain(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("port 465 must not start in clear text")

    monkeypatch.setattr(mail.smtplib, "SMTP_SSL", ImplicitTls)
    monkeypatch.setattr(mail.smtplib, "SMTP", no_plain)
    SmtpMailer(_settings("production", 465)).send(EMAIL, message_id="m1")
    assert opened == [("127.0.0.1", 465)]

"""E-mail senders: a drop folder of .eml files (local) and SMTP (Azure)."""

from __future__ import annotations

import os
import smtplib
import ssl
import tempfile
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from shared.config import Settings
from shared.domain.errors import UpstreamRejected
from shared.domain.notifications import Email
from shared.ports import Mailer


def build_message(email: Email, sender: str, message_id: str) -> EmailMessage:
    """The MIME message for `email`."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(email.to)
    if email.cc:
        msg["Cc"] = ", ".join(email.cc)
    msg["Subject"] = email.subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(idstring=message_id, domain="csp.local")
    msg.set_content(email.text)
    return msg


class DropFolderMailer:
    """Writes each e-mail as `<message id>.eml`, atomically (a resend overwrites, not adds)."""

    def __init__(self, folder: Path, sender: str) -> None:
        self.folder = folder
        self.sender = sender

    def send(self, email: Email, *, message_id: str) -> None:
        """Write the e-mail into the drop folder."""
        self.folder.mkdir(parents=True, exist_ok=True)
        data = bytes(build_message(email, self.sender, message_id))
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, self.folder / f"{message_id}.eml")


# Port of SMTP over implicit TLS ("submissions", RFC 8314); any other port must offer STARTTLS.
IMPLICIT_TLS_PORT = 465


class SmtpMailer:
    """Sends through an SMTP server over TLS: implicit on port 465, else STARTTLS.

    Outside APP_ENVIRONMENT=local a server that offers no STARTTLS is refused (nothing is sent,
    nor any password): e-mails carry sign-in details and invitation links. Locally a plain test
    server is fine.
    """

    def __init__(self, settings: Settings, *, tls_context: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self.tls_context = tls_context

    def send(self, email: Email, *, message_id: str) -> None:
        """Deliver the e-mail to the SMTP server."""
        s = self.settings
        assert s.smtp_host is not None
        context = self.tls_context or ssl.create_default_context()
        smtp: smtplib.SMTP
        if s.smtp_port == IMPLICIT_TLS_PORT:
            smtp = smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=30, context=context)
        else:
            smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=30)
        with smtp:
            if s.smtp_port != IMPLICIT_TLS_PORT:
                smtp.ehlo()
                if smtp.has_extn("starttls"):
                    smtp.starttls(context=context)
                    smtp.ehlo()
                elif s.environment != "local":
                    raise UpstreamRejected(
                        f"the SMTP server {s.smtp_host}:{s.smtp_port} offers no STARTTLS; outside "
                        "APP_ENVIRONMENT=local e-mail is sent only over TLS (STARTTLS, or "
                        f"implicit TLS on port {IMPLICIT_TLS_PORT}): fix SMTP_HOST / SMTP_PORT",
                        code="smtp_tls_required",
                    )
            if s.smtp_username and s.smtp_password:
                smtp.login(s.smtp_username, s.smtp_password.get_secret_value())
            smtp.send_message(build_message(email, s.mail_from, message_id))


def build_mailer(settings: Settings) -> Mailer:
    """The drop folder when MAIL_DROP_DIR is set, else SMTP."""
    if settings.mail_drop_dir is not None:
        return DropFolderMailer(settings.mail_drop_dir, settings.mail_from)
    if settings.smtp_host:
        return SmtpMailer(settings)
    raise RuntimeError("e-mail is not configured: set MAIL_DROP_DIR or SMTP_HOST")

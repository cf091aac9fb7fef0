"""Through the local host, Azurite and the local issuer: seeded users, isolation, invitations.

A token of `owner@other.example` gets 404 on every route of reseller `demo`, reads and
writes alike, and nothing of `demo` changes; `owner@demo.example` reaches the same routes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest

from localdev.azurite import Azurite
from localdev.funchost.config import quiet_timers
from localdev.funchost.process import HostProcess
from localdev.seed import seed
from localdev.tokens import issuers_json, serve_in_thread, token_for
from shared.bootstrap import Container
from shared.config import Settings
from shared.domain.identity import SignInKind, UserStatus
from tests.fakes import FakeIndirectResellers

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack(azurite: Azurite, table_prefix: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    issuer_dir = tmp_path / "issuer"
    srv, base = serve_in_thread(0, issuer_dir)
    env = {
        **quiet_timers(),
        "APP_ENVIRONMENT": "test",
        "AzureWebJobsStorage": azurite.connection_string,
        "TABLE_PREFIX": table_prefix,
        "AUTH_ISSUERS": issuers_json(base),
        "MAIL_DROP_DIR": str(tmp_path / "mail"),
        "PUBLIC_BASE_URL": "http://portal.test",
        "OUTBOX_SWEEP_SCHEDULE": "*/5 * * * * *",
        "HOUSEKEEPING_SCHEDULE": "0 0 0 1 1 *",
        "REMINDER_SCHEDULE": "0 0 0 1 1 *",
        "USAGE_IMPORT_SCHEDULE": "0 0 0 1 1 *",
        "SYNC_SCHEDULE": "0 0 0 1 1 *",
        "CATALOG_IMPORT_SCHEDULE": "0 0 0 1 1 *",
    }
    settings = Settings(**env)
    c = Container(settings)
    # Onboarding asks Partner Center about the resellers; this test needs nothing else of it.
    c.__dict__["partner_center"] = FakeIndirectResellers()
    seed(c)
    host = HostProcess(
        cwd=ROOT,
        env={**__import__("os").environ, **env},
        settings=tmp_path / "none.json",
        host_json=ROOT / "tests" / "apps" / "host.json",
    )
    host.start(timeout=60)
    try:
        yield {"host": host, "c": c, "settings": settings, "issuer_dir": issuer_dir}
    finally:
        host.stop()
        srv.shutdown()


def token(stack: dict[str, Any], email: str, kind: SignInKind = SignInKind.PLATFORM) -> str:
    return token_for(email, kind, state_dir=stack["issuer_dir"], settings=stack["settings"])


def request(stack, method, path, token_value, body=None, headers=None):
    all_headers = {"Authorization": f"Bearer {token_value}", **(headers or {})}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        all_headers["Content-Type"] = "application/json"
    return stack["host"].request(method, "/api/" + path, data, all_headers)


def test_seeding_twice_changes_nothing(stack):
    c = stack["c"]
    before = {(u.reseller, u.id): u.etag for u in c.users.iterate()}
    resellers_before = {r.slug: r.etag for r in c.resellers.iterate()}
    seed(c)
    assert {(u.reseller, u.id): u.etag for u in c.users.iterate()} == before
    assert {r.slug: r.etag for r in c.resellers.iterate()} == resellers_before
    assert len(before) == 5


def test_owner_of_other_cannot_read_or_change_anything_of_demo(stack):
    c = stack["c"]
    demo_owner, other_owner = (
        token(stack, "owner@demo.example"),
        token(stack, "owner@other.example"),
    )
    sales = next(u for u in c.users.iterate("demo") if u.email == "sales@demo.example")
    status, headers, _ = request(stack, "GET", "resellers/demo", demo_owner)
    assert status == 200
    etag = headers["etag"]
    status, headers, _ = request(stack, "GET", "resellers/demo/users", demo_owner)
    assert status == 200
    status, _, _ = request(stack, "GET", "resellers/other", other_owner)
    assert status == 200  # the token works, just not on demo

    attempts = [
        ("GET", "resellers/demo", None, {}),
        ("PATCH", "resellers/demo", {"name": "Owned"}, {"If-Match": etag}),
        ("GET", "resellers/demo/settings", None, {}),
        (
            "PUT",
            "resellers/demo/settings",
            {"appearance": {"displayName": "Owned"}},
            {"If-Match": etag},
        ),
        ("GET", "resellers/demo/users", None, {}),
        (
            "POST",
            "resellers/demo/users",
            {"email": "spy@other.example", "role": "AccountManager"},
            {},
        ),
        ("PATCH", f"resellers/demo/users/{sales.id}", {"status": "Disabled"}, {"If-Match": etag}),
        ("DELETE", f"resellers/demo/users/{sales.id}", None, {}),
    ]
    for method, path, body, headers in attempts:
        status, resp_headers, raw = request(stack, method, path, other_owner, body, headers)
        assert status == 404, (method, path, status, raw)
        assert resp_headers["content-type"].startswith("application/problem+json")
        assert b"demo" not in raw.split(b'"instance"')[0]  # the detail names nothing of demo

    demo = c.resellers.get("reseller", "demo")
    assert demo.name == "Demo Reseller s.r.o." and demo.settings.appearance.display_name != "Owned"
    assert c.users.get("demo", sales.id).status is UserStatus.ACTIVE
    assert not [u for u in c.users.iterate("demo") if u.email == "spy@other.example"]


def test_an_invitation_is_mailed_through_the_queue_and_accepted_once(stack, tmp_path):
    owner = token(stack, "owner@demo.example")
    email = "new.colleague@demo.example"
    status, _, raw = request(
        stack,
        "POST",
        "resellers/demo/users",
        owner,
        {"email": email, "role": "Sales"},
        {"Idempotency-Key": "inv-1"},
    )
    assert status == 201, raw
    mail_dir = tmp_path / "mail"
    deadline = time.monotonic() + 30
    while not list(mail_dir.glob("*.eml")):
        assert time.monotonic() < deadline, stack["host"].logs()
        time.sleep(0.2)
    [eml] = list(mail_dir.glob("*.eml"))
    text = message_from_bytes(eml.read_bytes()).get_payload(decode=True).decode()
    link = next(w for w in text.split() if w.startswith("http://portal.test/invitations/"))
    secret = link.rsplit("/", 1)[1]

    newcomer = token(stack, email)
    status, _, raw = request(stack, "POST", f"invitations/{secret}/accept", newcomer)
    assert status == 200, raw
    status, _, raw = request(stack, "GET", "me", newcomer)
    assert status == 200 and json.loads(raw)["user"]["role"] == "Sales"
    status, _, _ = request(stack, "POST", f"invitations/{secret}/accept", newcomer)
    assert status == 409

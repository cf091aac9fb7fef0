"""Sign-in at the HTTP edge, cost invisibility, ETags, idempotent creation, invitations."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator

import pytest

from functions._http import encode_etag
from localdev.tokens import public_jwk
from shared import bootstrap
from shared.domain.identity import SIGN_IN_REQUIRED, SignInKind, UserStatus
from shared.services import identity
from tests.fakes import reseller_ids
from tests.functions.helpers import call, json_of
from tests.functions.world import World, build_world


@pytest.fixture
def world() -> Iterator[World]:
    w = build_world()
    bootstrap.use(w.container)
    yield w
    bootstrap.use(None)


def me(token: str | None, headers: dict[str, str] | None = None):
    return call("http_me", "GET", "me", token=token, headers=headers)


def assert_refused_without_reason(resp, status: int = 401) -> dict:
    assert resp.status_code == status
    assert resp.mimetype == "application/problem+json"
    body = json_of(resp)
    assert set(body) >= {"type", "title", "status", "detail"}
    text = resp.get_body().decode()
    assert "Traceback" not in text and "kid" not in text.lower()
    return body


@pytest.mark.parametrize(
    "variant", ["expired", "other_audience", "unknown_issuer", "forged", "no_token", "not_bearer"]
)
def test_bad_tokens_get_a_401_that_says_nothing_about_why(world, variant):
    issuer, email = world.issuer, "owner@demo.example"
    tokens = {
        "expired": issuer.token(email, expires_in=-3600),
        "other_audience": issuer.token(email, audience="api://other"),
        "unknown_issuer": issuer.token(email, issuer="https://evil.example"),
        "forged": issuer.token(email)[:-6] + "AAAAAA",
        "no_token": None,
    }
    headers = {"Authorization": "Basic b3duZXI6cHc="} if variant == "not_bearer" else None
    resp = me(tokens.get(variant), headers)
    body = assert_refused_without_reason(resp)
    assert body["detail"] == SIGN_IN_REQUIRED
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert public_jwk(issuer.key)["kid"] not in resp.get_body().decode()


def test_a_sign_in_kind_the_reseller_disallowed_is_refused_with_a_clear_message(world):
    c, owner = world.container, world.users["AccountManager"]
    identity.link(c.directory, owner, world.issuer.sign_in(owner.email, SignInKind.PERSONAL))
    assert me(world.token("AccountManager", SignInKind.PERSONAL)).status_code == 200

    reseller = c.resellers.get("reseller", "demo")
    settings = json_of(
        call(
            "http_get_settings",
            "GET",
            "resellers/demo/settings",
            route={"r": "demo"},
            token=world.token("AccountManager"),
        )
    )
    settings["signIn"]["allowedMethods"] = ["platform", "work"]
    put = call(
        "http_put_settings",
        "PUT",
        "resellers/demo/settings",
        route={"r": "demo"},
        token=world.token("AccountManager"),
        body=settings,
        headers={"If-Match": encode_etag(reseller.etag)},
    )
    assert put.status_code == 200, put.get_body()

    body = assert_refused_without_reason(
        me(world.token("AccountManager", SignInKind.PERSONAL)), 403
    )
    assert "personal Microsoft account is not allowed" in body["detail"]
    assert me(world.token("AccountManager")).status_code == 200


def test_platform_sign_in_cannot_be_disallowed(world):
    c = world.container
    resp = call(
        "http_put_settings",
        "PUT",
        "resellers/demo/settings",
        route={"r": "demo"},
        token=world.token("AccountManager"),
        body={"signIn": {"allowedMethods": ["work"]}, "appearance": {"displayName": "D"}},
        headers={"If-Match": encode_etag(c.resellers.get("reseller", "demo").etag)},
    )
    assert resp.status_code == 400
    assert [e["field"] for e in json_of(resp)["errors"]] == ["signIn.allowedMethods"]


def test_a_valid_sign_in_no_user_owns_is_forbidden_until_it_accepts_an_invitation(world):
    resp = me(world.issuer.token("stranger@example.com"))
    assert "accept an invitation" in assert_refused_without_reason(resp, 403)["detail"]


def test_a_disabled_user_can_no_longer_sign_in(world):
    target = world.users["Sales"]
    resp = call(
        "http_disable_user",
        "DELETE",
        f"resellers/demo/users/{target.id}",
        route={"r": "demo", "u": target.id},
        token=world.token("AccountManager"),
    )
    assert resp.status_code == 200 and json_of(resp)["status"] == "Disabled"
    assert_refused_without_reason(me(world.token("Sales")), 403)


def test_easy_auth_header_is_ignored_unless_enabled(world):
    claims = [
        {"typ": "iss", "val": world.issuer.issuer(SignInKind.PLATFORM)},
        {"typ": "sub", "val": world.issuer.sign_in("owner@demo.example").subject},
    ]
    header = base64.b64encode(json.dumps({"claims": claims}).encode()).decode()
    assert me(None, {"X-MS-CLIENT-PRINCIPAL": header}).status_code == 401
    world.container.settings.auth_easy_auth_enabled = True
    resp = me(None, {"X-MS-CLIENT-PRINCIPAL": header})
    assert resp.status_code == 200 and json_of(resp)["user"]["email"] == "owner@demo.example"


def test_me_tells_role_organisation_and_permissions(world):
    body = json_of(me(world.token("CustomerAdmin")))
    assert body["user"]["role"] == "CustomerAdmin" and body["user"]["customerId"]
    assert body["seesCost"] is False
    assert "users.manage" in body["permissions"] and "settings.manage" not in body["permissions"]


@pytest.mark.parametrize(
    ("role", "sees_margin"),
    [
        ("AccountManager", True),
        ("ReadOnly", True),
        ("DistributorAdmin", True),
        ("CustomerAdmin", False),
        ("CustomerReader", False),
    ],
)
def test_customer_users_get_a_reseller_model_without_margin_fields(world, role, sees_margin):
    resp = call(
        "http_get_reseller", "GET", "resellers/demo", route={"r": "demo"}, token=world.token(role)
    )
    body = json_of(resp)
    assert resp.status_code == 200 and body["slug"] == "demo"
    assert ("defaultMarkupPercent" in body) is sees_margin
    assert ("partnerCenterTenantId" in body) is sees_margin
    assert ("mpnId" in body) is sees_margin
    # The distributor's mark-up is the distributor's business: resellers see only their cost.
    assert ("distributorMarkupPercent" in body) is (role == "DistributorAdmin")
    if sees_margin:
        assert body["defaultMarkupPercent"] == "10"


def test_patch_needs_if_match_and_a_stale_etag_is_412(world):
    args = dict(route={"r": "demo"}, token=world.token("DistributorAdmin"), body={"name": "N"})
    assert call("http_update_reseller", "PATCH", "resellers/demo", **args).status_code == 428
    got = call(
        "http_get_reseller",
        "GET",
        "resellers/demo",
        route={"r": "demo"},
        token=world.token("DistributorAdmin"),
    )
    etag = got.headers["ETag"]
    first = call(
        "http_update_reseller", "PATCH", "resellers/demo", headers={"If-Match": etag}, **args
    )
    assert first.status_code == 200 and first.headers["ETag"] != etag
    again = call(
        "http_update_reseller", "PATCH", "resellers/demo", headers={"If-Match": etag}, **args
    )
    assert again.status_code == 412


def test_onboarding_validates_every_field_in_one_answer(world):
    resp = call(
        "http_onboard_reseller",
        "POST",
        "resellers",
        token=world.token("DistributorAdmin"),
        body={
            "slug": "Bad Slug",
            "name": "",
            "partnerCenterTenantId": "x",
            "mpnId": "12ab",
            "country": "cz",
            "currency": "czk",
            "defaultMarginPercent": "-1",
            "extra": 1,
        },
    )
    assert resp.status_code == 400
    fields = {e["field"] for e in json_of(resp)["errors"]}
    assert fields == {
        "slug",
        "name",
        "partnerCenterTenantId",
        "mpnId",
        "country",
        "currency",
        "defaultMarginPercent",
        "extra",
    }


NEW = {
    "slug": "acme",
    "name": "Acme",
    "partnerCenterTenantId": reseller_ids("acme")[0],
    "mpnId": reseller_ids("acme")[1],
    "country": "CZ",
    "currency": "CZK",
}


def test_onboarding_twice_with_the_same_key_creates_one_reseller(world):
    args = dict(token=world.token("DistributorAdmin"), headers={"Idempotency-Key": "k-1"})
    first = call("http_onboard_reseller", "POST", "resellers", body=NEW, **args)
    second = call("http_onboard_reseller", "POST", "resellers", body=NEW, **args)
    assert first.status_code == second.status_code == 201
    assert first.get_body() == second.get_body()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.headers["ETag"] == first.headers["ETag"]
    different = call(
        "http_onboard_reseller", "POST", "resellers", body={**NEW, "slug": "acme2"}, **args
    )
    assert different.status_code == 409
    assert world.container.resellers.find("reseller", "acme2") is None
    without_key = call(
        "http_onboard_reseller",
        "POST",
        "resellers",
        body=NEW,
        token=world.token("DistributorAdmin"),
    )
    assert without_key.status_code == 409  # the slug is taken: no key, no replay


def test_a_failed_request_releases_its_idempotency_key(world):
    args = dict(token=world.token("DistributorAdmin"), headers={"Idempotency-Key": "k-2"})
    taken = {**NEW, "slug": "demo"}
    assert call("http_onboard_reseller", "POST", "resellers", body=taken, **args).status_code == 409
    assert call("http_onboard_reseller", "POST", "resellers", body=taken, **args).status_code == 409
    assert len(world.container.idempotency.rows) == 0


def _invitation_token(world: World, email: str) -> str:
    mails = [n for n in world.container.notifications.rows.values() if email in n.email.to]
    assert len(mails) == 1
    match = re.search(r"/invitations/([A-Za-z0-9._-]+)", mails[-1].render().text)
    assert match is not None
    return match.group(1)


def test_an_invited_person_accepts_once_and_is_then_signed_in(world):
    email = "new.colleague@demo.example"
    invite = call(
        "http_invite_user",
        "POST",
        "resellers/demo/users",
        route={"r": "demo"},
        token=world.token("AccountManager"),
        body={"email": email, "role": "Sales"},
    )
    assert invite.status_code == 201, invite.get_body()
    assert json_of(invite)["user"]["status"] == "Invited"
    [message] = world.container.notifications.sent
    assert message.queue.value == "notifications"
    secret = _invitation_token(world, email)
    assert secret not in invite.get_body().decode()  # the token only travels by e-mail

    newcomer = world.issuer.token(email)
    assert me(newcomer).status_code == 403
    accept = call(
        "http_accept_invitation",
        "POST",
        f"invitations/{secret}/accept",
        route={"token": secret},
        token=newcomer,
    )
    assert accept.status_code == 200, accept.get_body()
    assert json_of(accept)["status"] == UserStatus.ACTIVE.value
    body = json_of(me(newcomer))
    assert (body["user"]["email"], body["user"]["role"]) == (email, "Sales")

    again = call(
        "http_accept_invitation",
        "POST",
        f"invitations/{secret}/accept",
        route={"token": secret},
        token=newcomer,
    )
    assert again.status_code == 409


@pytest.mark.parametrize(
    ("name", "method", "route"),
    [
        ("http_get_reseller", "GET", {"r": "*"}),
        ("http_list_users", "GET", {"r": "*"}),
        ("http_disable_user", "DELETE", {"r": "*", "u": "01JCXSTA00000000000000000A"}),
        ("http_disable_user", "DELETE", {"r": "demo", "u": "bad\x01id"}),
        ("http_get_settings", "GET", {"r": "DEMO\x7f"}),
        ("http_accept_invitation", "POST", {"token": "\x01." + "x" * 40}),
    ],
)
def test_odd_route_values_are_404_never_500(world, name, method, route):
    resp = call(name, method, "x", route=route, token=world.token("DistributorAdmin"))
    assert resp.status_code == 404, resp.get_body()
    assert resp.mimetype == "application/problem+json"


def test_a_user_read_alone_carries_the_etag_its_change_needs(world):
    token = world.token("AccountManager")
    target = world.users["own_reseller"]
    path, route = f"resellers/demo/users/{target.id}", {"r": "demo", "u": target.id}
    got = call("http_get_user", "GET", path, route=route, token=token)
    assert got.status_code == 200
    assert json_of(got)["email"] == target.email
    changed = call(
        "http_update_user",
        "PATCH",
        path,
        route=route,
        token=token,
        body={"role": "Sales"},
        headers={"If-Match": got.headers["ETag"]},
    )
    assert changed.status_code == 200, changed.get_body()
    stale = call(
        "http_update_user",
        "PATCH",
        path,
        route=route,
        token=token,
        body={"role": "ReadOnly"},
        headers={"If-Match": got.headers["ETag"]},
    )
    assert stale.status_code == 412

"""Bearer tokens: only RS256 tokens of a trusted issuer, for us, in their lifetime, pass."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from localdev.tokens import mint, public_jwk
from shared.adapters.auth import JwksCache, JwtVerifier, _Refused
from shared.config import TrustedIssuer
from shared.domain.errors import Unauthenticated, UpstreamUnavailable
from shared.domain.identity import SIGN_IN_REQUIRED, SignInKind
from tests.fakes import AUDIENCE, TestIssuer

EMAIL = "owner@demo.example"


@pytest.fixture(scope="module")
def issuer() -> TestIssuer:
    return TestIssuer()


@pytest.fixture(scope="module")
def intruder_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def refused(verifier: JwtVerifier, token: str) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as info:
        verifier.verify(token)
    assert info.value.detail == SIGN_IN_REQUIRED
    return info.value


def test_a_valid_token_names_issuer_subject_kind_and_email(issuer):
    token = issuer.verifier().verify(issuer.token(EMAIL, SignInKind.WORK))
    assert token == issuer.sign_in(EMAIL, SignInKind.WORK)


def test_a_forged_signature_is_refused(issuer, intruder_key):
    kid = public_jwk(issuer.key)["kid"]
    forged = jwt.encode(
        {
            "iss": issuer.issuer(SignInKind.PLATFORM),
            "aud": AUDIENCE,
            "sub": "x",
            "exp": int(time.time()) + 600,
        },
        intruder_key,
        algorithm="RS256",
        headers={"kid": kid},
    )
    refused(issuer.verifier(), forged)


def test_a_tampered_payload_is_refused(issuer):
    header, payload, signature = issuer.token(EMAIL).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["email"] = "admin@distributor.example"
    refused(issuer.verifier(), ".".join([header, b64(json.dumps(claims).encode()), signature]))


def test_an_expired_token_is_refused_beyond_the_clock_skew(issuer):
    verifier = issuer.verifier(leeway_seconds=30)
    refused(verifier, issuer.token(EMAIL, expires_in=-31))
    assert verifier.verify(issuer.token(EMAIL, expires_in=-5)).subject  # inside the skew


def test_a_token_not_yet_valid_is_refused(issuer):
    refused(issuer.verifier(leeway_seconds=0), issuer.token(EMAIL, not_before=time.time() + 600))


def test_a_token_for_another_audience_is_refused(issuer):
    refused(issuer.verifier(), issuer.token(EMAIL, audience="api://someone-else"))


def test_a_token_from_an_unknown_issuer_is_refused_even_with_our_key(issuer):
    refused(issuer.verifier(), issuer.token(EMAIL, issuer="https://evil.example/v2.0"))


def test_a_token_without_expiry_is_refused(issuer):
    kid = public_jwk(issuer.key)["kid"]
    token = jwt.encode(
        {"iss": issuer.issuer(SignInKind.PLATFORM), "aud": AUDIENCE, "sub": "s"},
        issuer.key,
        algorithm="RS256",
        headers={"kid": kid},
    )
    refused(issuer.verifier(), token)


def test_alg_none_is_refused(issuer):
    claims = {
        "iss": issuer.issuer(SignInKind.PLATFORM),
        "aud": AUDIENCE,
        "sub": "s",
        "exp": int(time.time()) + 600,
    }
    token = jwt.encode(
        claims, None, algorithm="none", headers={"kid": public_jwk(issuer.key)["kid"]}
    )
    refused(issuer.verifier(), token)


def test_hs256_signed_with_the_public_key_as_secret_is_refused(issuer):
    pem = issuer.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": public_jwk(issuer.key)["kid"]}
    claims = {
        "iss": issuer.issuer(SignInKind.PLATFORM),
        "aud": AUDIENCE,
        "sub": "s",
        "exp": int(time.time()) + 600,
    }
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    refused(issuer.verifier(), f"{signing_input}.{b64(signature)}")


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "e30.e30.", "Bearer x"])
def test_garbage_is_refused(issuer, garbage):
    refused(issuer.verifier(), garbage)


def test_a_rotated_key_is_fetched_once_and_random_kids_do_not_hammer_the_issuer(intruder_key):
    old, new = TestIssuer().key, intruder_key
    published = {"keys": [public_jwk(old)]}
    fetches: list[str] = []

    def fetch(uri):
        fetches.append(uri)
        return published

    now = [1000.0]
    cache = JwksCache(
        "https://issuer.test/jwks", min_refresh=30, fetch=fetch, monotonic=lambda: now[0]
    )
    assert cache.key(public_jwk(old)["kid"])
    assert len(fetches) == 1
    published = {"keys": [public_jwk(old), public_jwk(new)]}
    with pytest.raises(_Refused):
        cache.key(public_jwk(new)["kid"])  # too soon after the last fetch
    now[0] += 31
    assert cache.key(public_jwk(new)["kid"])  # rotation: refetched for the unknown kid
    assert len(fetches) == 2
    for i in range(20):
        with pytest.raises(_Refused):
            cache.key(f"random-{i}")
    assert len(fetches) == 2


def test_unreachable_jwks_is_a_503_not_a_401(issuer):
    def down(uri):
        raise OSError("connection refused")

    verifier = JwtVerifier(issuer.trusted(), fetch=down)
    with pytest.raises(UpstreamUnavailable):
        verifier.verify(issuer.token(EMAIL))


def test_multi_tenant_issuer_needs_the_tid_claim_to_name_the_same_tenant(issuer):
    tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    template = "https://login.microsoftonline.com/{tenantid}/v2.0"
    verifier = JwtVerifier(
        [
            TrustedIssuer(
                issuer=template,
                jwks_uri="https://login.test/keys",
                audience=AUDIENCE,
                kind=SignInKind.WORK,
            )
        ],
        fetch=lambda uri: {"keys": [public_jwk(issuer.key)]},
    )
    iss = template.replace("{tenantid}", tenant)
    good = mint(issuer.key, issuer=iss, audience=AUDIENCE, subject="s", extra={"tid": tenant})
    assert verifier.verify(good).kind is SignInKind.WORK
    other = "00000000-0000-0000-0000-000000000001"
    bad = mint(issuer.key, issuer=iss, audience=AUDIENCE, subject="s", extra={"tid": other})
    refused(verifier, bad)


def test_easy_auth_principal_maps_to_a_trusted_issuer(issuer):
    claims = [
        {"typ": "iss", "val": issuer.issuer(SignInKind.PERSONAL)},
        {
            "typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier",
            "val": "abc",
        },
        {"typ": "email", "val": EMAIL},
    ]
    header = base64.b64encode(json.dumps({"auth_typ": "aad", "claims": claims}).encode()).decode()
    token = issuer.verifier().from_easy_auth(header)
    assert (token.kind, token.subject, token.email) == (SignInKind.PERSONAL, "abc", EMAIL)
    evil = base64.b64encode(
        json.dumps(
            {"claims": [{"typ": "iss", "val": "https://evil"}, {"typ": "sub", "val": "x"}]}
        ).encode()
    )
    with pytest.raises(Unauthenticated):
        issuer.verifier().from_easy_auth(evil.decode())
    with pytest.raises(Unauthenticated):
        issuer.verifier().from_easy_auth("not base64 at all!")

"""Bearer tokens (RS256 JWTs) checked against the configured trusted issuers, and Easy Auth.

Signature, expiry, not-before, audience and issuer are all checked; only RS256 is accepted
(so `alg: none` and HS256-with-the-public-key tricks fail). Signing keys come from each
issuer's JWKS, cached; an unknown `kid` refetches the set (key rotation), at most once per
`min_refresh` so that random kids cannot make us hammer the issuer. Whatever is wrong with a
token, the caller learns only that it was refused; the reason goes to the log.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
import jwt

from shared.config import TrustedIssuer
from shared.domain.errors import Unauthenticated, UpstreamUnavailable
from shared.domain.identity import SIGN_IN_REQUIRED, VerifiedToken

log = logging.getLogger(__name__)

_TENANT = "{tenantid}"
_CLAIM_URIS = {
    "sub": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier",
    "email": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    "tid": "http://schemas.microsoft.com/identity/claims/tenantid",
    "name": "name",
}


class _Refused(Exception):
    """A token failed a check; the message is for the log only."""


def fetch_json(uri: str) -> Mapping[str, Any]:
    """GET a JSON document (an issuer's JWKS)."""
    reply = httpx.get(uri, timeout=10.0, follow_redirects=False)
    reply.raise_for_status()
    data = reply.json()
    if not isinstance(data, dict):
        raise ValueError("the JWKS is not a JSON object")
    return data


class JwksCache:
    """One issuer's signing keys: cached for `ttl`, refetched for an unknown kid (rotation)."""

    def __init__(
        self,
        uri: str,
        *,
        ttl: float = 3600.0,
        min_refresh: float = 30.0,
        fetch: Callable[[str], Mapping[str, Any]] = fetch_json,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.uri = uri
        self.ttl = ttl
        self.min_refresh = min_refresh
        self._fetch = fetch
        self._now = monotonic
        self._keys: dict[str, jwt.PyJWK] | None = None
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        try:
            jwks = jwt.PyJWKSet.from_dict(dict(self._fetch(self.uri)))
        except Exception as exc:
            self._fetched_at = self._now()  # do not retry on every request while it is down
            if self._keys is None:
                log.error("cannot fetch the signing keys of an issuer: %s", type(exc).__name__)
                raise UpstreamUnavailable(
                    "the sign-in keys cannot be fetched; retry later"
                ) from None
            log.warning("keeping cached signing keys; refresh failed: %s", type(exc).__name__)
            return
        self._keys = {k.key_id: k for k in jwks.keys if k.key_id}
        self._fetched_at = self._now()

    def key(self, kid: str) -> jwt.PyJWK:
        """The signing key `kid`; refreshes a stale set, and once in a while for a new kid."""
        with self._lock:
            age = self._now() - self._fetched_at
            stale = self._keys is None or age >= self.ttl
            rotated = self._keys is not None and kid not in self._keys and age >= self.min_refresh
            if stale or rotated:
                self._refresh()
            found = (self._keys or {}).get(kid)
        if found is None:
            raise _Refused("unknown key id")
        return found


def _issuer_pattern(template: str) -> re.Pattern[str]:
    parts = [re.escape(p) for p in template.split(_TENANT)]
    return re.compile("^" + r"(?P<tid>[0-9a-fA-F-]{36})".join(parts) + "$")


class JwtVerifier:
    """The TokenVerifier port for bearer JWTs and App Service authentication headers."""

    def __init__(
        self,
        issuers: Sequence[TrustedIssuer],
        *,
        leeway_seconds: float = 60.0,
        jwks_ttl_seconds: float = 3600.0,
        jwks_min_refresh_seconds: float = 30.0,
        fetch: Callable[[str], Mapping[str, Any]] = fetch_json,
    ) -> None:
        self.issuers = [(_issuer_pattern(i.issuer), i) for i in issuers]
        self.leeway = leeway_seconds
        self._caches = {
            i.jwks_uri: JwksCache(
                i.jwks_uri, ttl=jwks_ttl_seconds, min_refresh=jwks_min_refresh_seconds, fetch=fetch
            )
            for i in issuers
        }

    def _trusted(self, iss: Any, tid: Any) -> TrustedIssuer:
        if not isinstance(iss, str):
            raise _Refused("no issuer")
        for pattern, issuer in self.issuers:
            match = pattern.match(iss)
            if match is None:
                continue
            # A multi-tenant issuer must name the tenant the token says it comes from.
            if "tid" in pattern.groupindex and match.group("tid").lower() != str(tid).lower():
                continue
            return issuer
        raise _Refused("untrusted issuer")

    def verify(self, token: str) -> VerifiedToken:
        """The checked token; Unauthenticated (with no reason given) if anything is wrong."""
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != "RS256":
                raise _Refused("algorithm")
            kid = header.get("kid")
            if not isinstance(kid, str) or not kid:
                raise _Refused("no key id")
            unverified = jwt.decode(token, options={"verify_signature": False})
            trusted = self._trusted(unverified.get("iss"), unverified.get("tid"))
            key = self._caches[trusted.jwks_uri].key(kid)
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=["RS256"],
                audience=trusted.audience,
                issuer=unverified["iss"],
                leeway=self.leeway,
                options={"require": ["exp", "iss", "sub", "aud"]},
            )
        except UpstreamUnavailable:
            raise
        except (_Refused, jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
            log.info("bearer token refused: %s", _reason(exc))
            raise Unauthenticated(SIGN_IN_REQUIRED) from None
        return _verified(claims, trusted)

    def from_easy_auth(self, header: str) -> VerifiedToken:
        """The caller App Service authentication vouches for (`X-MS-CLIENT-PRINCIPAL`)."""
        try:
            data = json.loads(base64.b64decode(header, validate=True))
            pairs = data["claims"]
            claims: dict[str, Any] = {}
            for pair in pairs:
                claims.setdefault(str(pair["typ"]), pair["val"])
            for short, uri in _CLAIM_URIS.items():
                claims.setdefault(short, claims.get(uri))
            trusted = self._trusted(claims.get("iss"), claims.get("tid"))
            if not isinstance(claims.get("sub"), str) or not claims["sub"]:
                raise _Refused("no subject")
        except (_Refused, binascii.Error, ValueError, TypeError, KeyError) as exc:
            log.info("easy auth principal refused: %s", _reason(exc))
            raise Unauthenticated(SIGN_IN_REQUIRED) from None
        return _verified(claims, trusted)


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, _Refused) else type(exc).__name__


def _verified(claims: Mapping[str, Any], trusted: TrustedIssuer) -> VerifiedToken:
    def text(name: str) -> str | None:
        value = claims.get(name)
        return value if isinstance(value, str) and value else None

    return VerifiedToken(
        issuer=str(claims["iss"]),
        subject=str(claims["sub"]),
        kind=trusted.kind,
        email=text("email"),
        name=text("name"),
        tenant_id=text("tid"),
    )

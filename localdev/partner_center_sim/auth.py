"""OAuth2 for the simulator: an RS256 signing key, client credentials and refresh tokens."""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .errors import ErrorCode, SimError

PARTNER_CENTER_AUDIENCE = "https://api.partnercenter.microsoft.com"
PRICE_SHEET_AUDIENCE = "https://api.partner.microsoft.com"
# Microsoft Graph: the partner billing reports (Azure usage exports) live there, with tokens for
# Graph's own audience; a Partner Center token is refused there, and the other way round.
GRAPH_AUDIENCE = "https://graph.microsoft.com"
AUDIENCES = (PARTNER_CENTER_AUDIENCE, PRICE_SHEET_AUDIENCE)
ALL_AUDIENCES = (*AUDIENCES, GRAPH_AUDIENCE)
TOKEN_LIFETIME_SECONDS = 3599


@dataclass(frozen=True, slots=True)
class Principal:
    """Who called: the partner tenant, the app, and the user for app+user tokens."""

    tenant_id: str
    app_id: str
    user: str | None
    audience: str = PARTNER_CENTER_AUDIENCE

    @property
    def is_app_user(self) -> bool:
        """App+user (Secure Application Model) rather than app-only."""
        return self.user is not None


class TokenService:
    """Issues and checks the simulator's access tokens (real RS256 JWTs)."""

    def __init__(self, key_path: Path, tenant_id: str, client_id: str, base_url: str) -> None:
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.issuer = f"https://sts.windows.net/{tenant_id}/"
        self.authority = f"{base_url}/{tenant_id}"
        self._key = _load_or_create_key(key_path)
        self._public = self._key.public_key()
        self.kid = (
            base64.urlsafe_b64encode(uuid.uuid5(uuid.NAMESPACE_URL, str(key_path.resolve())).bytes)
            .decode()
            .rstrip("=")
        )
        self._verified: dict[str, tuple[float, Principal]] = {}

    def issue(self, audience: str, user: dict[str, str] | None, scopes: str) -> str:
        """A signed access token (wall time: moving the simulated clock keeps tokens valid)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": self.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME_SECONDS,
            "appid": self.client_id,
            "tid": self.tenant_id,
            "ver": "1.0",
            "jti": str(uuid.uuid4()),
        }
        if user:
            claims.update(
                idtyp="user",
                upn=user["upn"],
                oid=user["oid"],
                scp="user_impersonation",
                sub=user["oid"],
            )
        else:
            # Graph's partner billing reports need the application permission
            # PartnerBilling.Read.All; Partner Center's own APIs have their own role.
            role = (
                "PartnerBilling.Read.All" if audience == GRAPH_AUDIENCE else "PartnerCenter.Access"
            )
            claims.update(idtyp="app", oid=self.client_id, sub=self.client_id, roles=[role])
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})

    def verify(
        self, authorization: str | None, audiences: tuple[str, ...] = AUDIENCES
    ) -> Principal:
        """Check a Bearer token on an API call; 401 when missing, malformed, expired, foreign
        or issued for another API than `audiences`."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise SimError(
                401, ErrorCode.UNAUTHORIZED, "Authorization header with a Bearer token is required."
            )
        token = authorization[7:].strip()
        cached = self._verified.get(token)
        if cached and cached[0] > time.time():
            return _for(cached[1], audiences)
        try:
            claims = jwt.decode(
                token,
                self._public,
                algorithms=["RS256"],
                audience=list(ALL_AUDIENCES),
                issuer=self.issuer,
                leeway=30,
            )
        except jwt.PyJWTError as exc:
            raise SimError(
                401, ErrorCode.UNAUTHORIZED, f"The access token is invalid: {exc}."
            ) from exc
        principal = Principal(
            tenant_id=str(claims["tid"]),
            app_id=str(claims["appid"]),
            user=claims.get("upn") if claims.get("idtyp") == "user" else None,
            audience=str(claims["aud"]).lower(),
        )
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[token] = (float(claims["exp"]), principal)
        return _for(principal, audiences)

    def jwks(self) -> dict[str, Any]:
        """The public key as a JWK set."""
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._public))
        jwk.update(kid=self.kid, use="sig", alg="RS256")
        return {"keys": [jwk]}

    def openid_configuration(self) -> dict[str, Any]:
        """The discovery document at {authority}/v2.0/.well-known/openid-configuration."""
        base = self.authority
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{base}/openid/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "oid", "upn"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "sim.local",
        }


def _for(principal: Principal, audiences: tuple[str, ...]) -> Principal:
    if principal.audience not in audiences:
        raise SimError(
            401,
            ErrorCode.UNAUTHORIZED,
            f"The access token is for {principal.audience}, not for this API.",
        )
    return principal


def audience_for(scope: str) -> str | None:
    """The audience a scope asks for, or None when it names none of the simulated APIs."""
    for part in scope.split():
        resource = part.removesuffix("/.default").removesuffix("/user_impersonation").rstrip("/")
        if resource.lower() in ALL_AUDIENCES:
            return resource.lower()
    return None


def _load_or_create_key(path: Path) -> rsa.RSAPrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if isinstance(key, rsa.RSAPrivateKey):
            return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return key

"""Access tokens for Partner Center: msal client credentials, and app+user by refresh token.

One `ConfidentialClientApplication` per process, created on first use (never at import), so
msal's in-memory token cache serves every call until the token is about to expire.

App+user (Secure Application Model): the operations that Partner Center only allows with a user
(see `client.Operation`) exchange the configured refresh token for an access token
(`acquire_token_by_refresh_token`); without one they fail with a configuration error, since
Partner Center refuses app-only tokens there (403).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import msal
import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from shared.domain.errors import UpstreamUnavailable

log = logging.getLogger(__name__)


class PartnerCenterSignInFailed(UpstreamUnavailable):
    """Partner Center sign-in does not work (secret, certificate, consent, revoked token).

    Transient on purpose: it is the platform's configuration that is broken, not the record a
    queue step works on, so in-flight records wait for an operator instead of all failing.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        log.error(
            "ALERT Partner Center sign-in failing; fix its credentials or consent "
            "(queue steps are retried, not failed): %s",
            detail,
        )


# Authorities msal knows itself; anything else (the simulator, a test issuer) must not trigger
# instance discovery, or msal asks login.microsoftonline.com about it and fails offline.
_MICROSOFT_AUTHORITY_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.windows.net",
        "login.microsoft.com",
        "sts.windows.net",
        "login.microsoftonline.us",
        "login.usgovcloudapi.net",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
    }
)

# A user token is refreshed this long before it expires, so a call never leaves with a token that
# dies in flight.
_EXPIRY_SKEW_SECONDS = 300.0


class TokenProvider(Protocol):
    """Where the client gets bearer tokens from (msal in production, a stub in unit tests)."""

    def access_token(self, scope: str, *, user: bool = False) -> str:
        """A valid access token for `scope`; `user` asks for app+user where configured."""
        ...

    def forget(self, scope: str, *, user: bool = False) -> None:
        """Drop the cached token for `scope` (Partner Center refused it), so the next is new."""
        ...


class VerifyingHttpClient:
    """msal's HTTP client: a requests Session that passes `verify` on every single request.

    requests lets `REQUESTS_CA_BUNDLE` / `CURL_CA_BUNDLE` override a Session's own `verify`
    (`merge_environment_settings`), so `Session.verify = ca` is silently ignored wherever those
    are set; only a per-request `verify=` wins over the environment.
    """

    def __init__(self, verify: str | bool, timeout: float) -> None:
        self._verify = verify
        self._timeout = timeout
        self._session = requests.Session()

    def get(
        self,
        url: str,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """HTTP GET with the configured trust and timeout."""
        kwargs.pop("verify", None)
        kwargs.setdefault("timeout", self._timeout)
        return self._session.get(url, params=params, headers=headers, verify=self._verify, **kwargs)

    def post(
        self,
        url: str,
        params: dict[str, Any] | None = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """HTTP POST with the configured trust and timeout."""
        kwargs.pop("verify", None)
        kwargs.setdefault("timeout", self._timeout)
        return self._session.post(
            url, params=params, data=data, headers=headers, verify=self._verify, **kwargs
        )

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()


@dataclass(frozen=True)
class MsalConfig:
    """What msal needs; built from the settings by `build_partner_center`."""

    authority: str
    tenant_id: str
    client_id: str
    client_secret: str | None = None
    certificate_path: Path | None = None
    certificate_thumbprint: str | None = None
    refresh_token: str | None = None
    ca_cert_path: Path | None = None
    timeout_seconds: float = 30.0

    @property
    def authority_url(self) -> str:
        """The authority with the tenant (unless the setting already ends with it)."""
        base = self.authority.rstrip("/")
        if self.tenant_id and not base.endswith("/" + self.tenant_id):
            return f"{base}/{self.tenant_id}"
        return base

    @property
    def is_microsoft_authority(self) -> bool:
        """Whether msal knows this authority (else instance discovery must be off)."""
        return (urlparse(self.authority).hostname or "").lower() in _MICROSOFT_AUTHORITY_HOSTS


def certificate_credential(pem_path: Path, thumbprint: str | None) -> dict[str, str]:
    """msal's certificate credential from a PEM holding the private key (and the certificate)."""
    pem = pem_path.read_text(encoding="ascii")
    if not thumbprint:
        # The thumbprint is the certificate's SHA-1; compute it rather than making the operator
        # copy it by hand when the certificate sits in the same PEM.
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
        der = cert.public_bytes(Encoding.DER)
        thumbprint = hashlib.sha1(der, usedforsecurity=False).hexdigest()
    return {"private_key": pem, "thumbprint": thumbprint.replace(":", "").upper()}


class MsalTokenProvider:
    """Tokens from Entra ID (or the simulator's issuer) through msal."""

    def __init__(self, config: MsalConfig, *, app_factory: Any = None) -> None:
        self._config = config
        self._app: Any = None
        self._lock = threading.Lock()
        self._app_factory = app_factory or msal.ConfidentialClientApplication
        # App+user tokens are cached here, not in msal: an account only appears in msal's cache
        # when the response carries an id_token/client_info, which a refresh-token exchange
        # for Partner Center need not include.
        self._user_tokens: dict[str, tuple[str, float]] = {}
        self._refresh_token = config.refresh_token

    def access_token(self, scope: str, *, user: bool = False) -> str:
        """A valid access token for `scope` (app+user when asked and configured)."""
        if user:
            return self._user_token(scope)
        app = self._application()
        result = self._call(lambda: app.acquire_token_for_client(scopes=[scope]))
        return _token_from(result)

    def forget(self, scope: str, *, user: bool = False) -> None:
        """Drop the cached token for `scope` (Partner Center refused it), so the next is new."""
        with self._lock:
            self._user_tokens.pop(scope, None)
            app = self._app
        if app is not None and not (user and self._refresh_token):
            app.remove_tokens_for_client()

    def _user_token(self, scope: str) -> str:
        with self._lock:
            cached = self._user_tokens.get(scope)
            if cached is not None and cached[1] - _EXPIRY_SKEW_SECONDS > time.monotonic():
                return cached[0]
        refresh_token = self._refresh_token
        if not refresh_token:
            # A configuration gap like a missing secret: an outage for operators, not a refusal
            # of the record a queue step works on.
            raise PartnerCenterSignInFailed(
                "This Partner Center operation needs app+user credentials: set "
                "PARTNER_CENTER_REFRESH_TOKEN (Secure Application Model)"
            )
        app = self._application()
        result = self._call(
            lambda: app.acquire_token_by_refresh_token(refresh_token, scopes=[scope])
        )
        token = _token_from(result)
        expires_in = float(result.get("expires_in", 3600))
        with self._lock:
            self._user_tokens[scope] = (token, time.monotonic() + expires_in)
            # Entra rotates refresh tokens; keep the newest for the rest of this process.
            if result.get("refresh_token"):
                self._refresh_token = str(result["refresh_token"])
        return token

    def _application(self) -> Any:
        with self._lock:
            if self._app is None:
                self._app = self._call(self._create_application)
            return self._app

    def _create_application(self) -> Any:
        config = self._config
        credential: str | dict[str, str]
        if config.certificate_path is not None:
            credential = certificate_credential(
                config.certificate_path, config.certificate_thumbprint
            )
        elif config.client_secret:
            credential = config.client_secret
        else:
            raise PartnerCenterSignInFailed(
                "Partner Center credentials are not configured (client secret or certificate)"
            )
        verify: str | bool = str(config.ca_cert_path) if config.ca_cert_path else True
        kwargs: dict[str, Any] = {}
        if not config.is_microsoft_authority:
            kwargs["instance_discovery"] = False
        return self._app_factory(
            config.client_id,
            client_credential=credential,
            authority=config.authority_url,
            http_client=VerifyingHttpClient(verify, config.timeout_seconds),
            **kwargs,
        )

    @staticmethod
    def _call(operation: Any) -> Any:
        try:
            return operation()
        except UpstreamUnavailable:
            raise
        except requests.RequestException as exc:
            raise UpstreamUnavailable(f"token endpoint unreachable: {exc}") from exc
        except ValueError as exc:
            # msal raises ValueError when it cannot read the authority's discovery document,
            # which is an outage as often as a typo; let the caller retry later.
            raise UpstreamUnavailable(f"authority not usable: {exc}") from exc


def _token_from(result: Any) -> str:
    if isinstance(result, dict) and result.get("access_token"):
        return str(result["access_token"])
    if not isinstance(result, dict):
        raise UpstreamUnavailable("token endpoint gave no answer")
    error = str(result.get("error") or "unknown_error")
    description = str(result.get("error_description") or error)
    # Every refusal of the token endpoint (AADSTS…: wrong or expired secret, unknown app,
    # revoked refresh token, missing consent) needs an operator; none is the record's fault.
    raise PartnerCenterSignInFailed(f"Partner Center sign-in refused ({error}): {description}")

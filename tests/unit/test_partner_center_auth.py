"""Partner Center tokens: msal wiring, the CA-bundle trap, app+user, error mapping."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from shared.adapters.partner_center.auth import (
    MsalConfig,
    MsalTokenProvider,
    PartnerCenterSignInFailed,
    VerifyingHttpClient,
    certificate_credential,
)
from shared.domain.errors import UpstreamUnavailable

SCOPE = "https://api.partnercenter.microsoft.com/.default"


class FakeApp:
    """Stands in for msal.ConfidentialClientApplication."""

    instances: list[FakeApp] = []

    def __init__(self, client_id: str, **kwargs: Any) -> None:
        self.client_id = client_id
        self.kwargs = kwargs
        self.calls: list[tuple[str, Any]] = []
        self.client_result: dict[str, Any] = {"access_token": "app", "expires_in": 3600}
        self.refresh_results: list[dict[str, Any]] = []
        FakeApp.instances.append(self)

    def acquire_token_for_client(self, scopes: list[str]) -> dict[str, Any]:
        self.calls.append(("client", scopes))
        return self.client_result

    def acquire_token_by_refresh_token(self, token: str, scopes: list[str]) -> dict[str, Any]:
        self.calls.append(("refresh", token))
        return self.refresh_results.pop(0)

    def remove_tokens_for_client(self) -> None:
        self.calls.append(("forget", None))


@pytest.fixture(autouse=True)
def _reset_fake() -> None:
    FakeApp.instances.clear()


def config(**overrides: Any) -> MsalConfig:
    values: dict[str, Any] = {
        "authority": "https://127.0.0.1:8443",
        "tenant_id": "tenant-1",
        "client_id": "app-1",
        "client_secret": "secret",
    }
    values.update(overrides)
    return MsalConfig(**values)


def test_application_is_created_lazily_once_with_simulator_authority() -> None:
    provider = MsalTokenProvider(config(ca_cert_path=Path("/ca.pem")), app_factory=FakeApp)
    assert FakeApp.instances == []

    assert provider.access_token(SCOPE) == "app"
    assert provider.access_token(SCOPE) == "app"

    assert len(FakeApp.instances) == 1
    app = FakeApp.instances[0]
    assert app.client_id == "app-1"
    assert app.kwargs["authority"] == "https://127.0.0.1:8443/tenant-1"
    assert app.kwargs["client_credential"] == "secret"
    assert app.kwargs["instance_discovery"] is False
    assert isinstance(app.kwargs["http_client"], VerifyingHttpClient)
    # msal's own cache decides whether a call goes to the network; we always ask it.
    assert app.calls == [("client", [SCOPE]), ("client", [SCOPE])]


def test_microsoft_authority_keeps_instance_discovery() -> None:
    provider = MsalTokenProvider(
        config(authority="https://login.microsoftonline.com"), app_factory=FakeApp
    )
    provider.access_token(SCOPE)

    app = FakeApp.instances[0]
    assert "instance_discovery" not in app.kwargs
    assert app.kwargs["authority"] == "https://login.microsoftonline.com/tenant-1"


def test_authority_already_naming_the_tenant_is_used_as_is() -> None:
    assert config(authority="https://sim.local/tenant-1/").authority_url == (
        "https://sim.local/tenant-1"
    )


def test_user_operations_use_the_refresh_token_and_cache_the_result() -> None:
    provider = MsalTokenProvider(config(refresh_token="rt-1"), app_factory=FakeApp)
    provider.access_token(SCOPE)  # creates the app
    app = FakeApp.instances[0]
    app.refresh_results = [
        {"access_token": "user-1", "expires_in": 3600, "refresh_token": "rt-2"},
    ]

    assert provider.access_token(SCOPE, user=True) == "user-1"
    assert provider.access_token(SCOPE, user=True) == "user-1"

    assert [c for c in app.calls if c[0] == "refresh"] == [("refresh", "rt-1")]


def test_expiring_user_token_is_refreshed_with_the_rotated_refresh_token() -> None:
    provider = MsalTokenProvider(config(refresh_token="rt-1"), app_factory=FakeApp)
    provider.access_token(SCOPE)
    app = FakeApp.instances[0]
    app.refresh_results = [
        {"access_token": "user-1", "expires_in": 60, "refresh_token": "rt-2"},
        {"access_token": "user-2", "expires_in": 3600},
    ]

    assert provider.access_token(SCOPE, user=True) == "user-1"
    assert provider.access_token(SCOPE, user=True) == "user-2"
    assert [c for c in app.calls if c[0] == "refresh"] == [("refresh", "rt-1"), ("refresh", "rt-2")]


def test_without_refresh_token_user_operations_are_a_sign_in_outage_naming_the_setting() -> None:
    provider = MsalTokenProvider(config(), app_factory=FakeApp)

    with pytest.raises(PartnerCenterSignInFailed) as caught:
        provider.access_token(SCOPE, user=True)

    assert "PARTNER_CENTER_REFRESH_TOKEN" in caught.value.detail
    # No app-only token is fetched for it, and app-only operations still work.
    assert FakeApp.instances == [] or FakeApp.instances[0].calls == []
    assert provider.access_token(SCOPE) == "app"


def test_wrong_secret_is_a_sign_in_outage_that_alerts_and_leaves_records_to_retry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider = MsalTokenProvider(config(), app_factory=FakeApp)
    provider.access_token(SCOPE)
    FakeApp.instances[0].client_result = {
        "error": "invalid_client",
        "error_description": "AADSTS7000215: Invalid client secret provided.",
    }

    with pytest.raises(PartnerCenterSignInFailed) as caught:
        provider.access_token(SCOPE)

    assert isinstance(caught.value, UpstreamUnavailable)  # queue steps retry, never give up
    assert "Invalid client secret" in caught.value.detail
    assert any(r.levelname == "ERROR" and "AADSTS7000215" in r.message for r in caplog.records)


def test_token_service_trouble_is_transient() -> None:
    provider = MsalTokenProvider(config(), app_factory=FakeApp)
    provider.access_token(SCOPE)
    FakeApp.instances[0].client_result = {"error": "temporarily_unavailable"}

    with pytest.raises(UpstreamUnavailable):
        provider.access_token(SCOPE)


def test_unreachable_authority_is_transient_and_retried_on_next_call() -> None:
    attempts: list[int] = []

    def factory(client_id: str, **kwargs: Any) -> FakeApp:
        attempts.append(1)
        if len(attempts) == 1:
            raise requests.ConnectionError("refused")
        return FakeApp(client_id, **kwargs)

    provider = MsalTokenProvider(config(), app_factory=factory)

    with pytest.raises(UpstreamUnavailable):
        provider.access_token(SCOPE)
    assert provider.access_token(SCOPE) == "app"


def test_missing_credentials_are_a_sign_in_outage() -> None:
    provider = MsalTokenProvider(config(client_secret=None), app_factory=FakeApp)

    with pytest.raises(PartnerCenterSignInFailed):
        provider.access_token(SCOPE)


# --- the CA-bundle trap ----------------------------------------------------------------------


def _capture_verify(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    seen: list[Any] = []

    def send(self: Any, request: Any, **kwargs: Any) -> requests.Response:
        seen.append(kwargs.get("verify"))
        response = requests.Response()
        response.status_code = 200
        response._content = b"{}"
        return response

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    return seen


def test_environment_ca_bundle_overrides_a_session_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    # The trap itself, so this test fails loudly if requests ever changes and the wrapper can go.
    seen = _capture_verify(monkeypatch)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/elsewhere.pem")
    session = requests.Session()
    session.verify = "/sim/ca.pem"

    session.get("https://sim.local/x")

    assert seen == ["/etc/elsewhere.pem"]


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_msal_http_client_passes_our_ca_despite_the_environment(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    seen = _capture_verify(monkeypatch)
    monkeypatch.setenv(variable, "/etc/elsewhere.pem")
    client = VerifyingHttpClient("/sim/ca.pem", timeout=5)

    client.get("https://sim.local/.well-known/openid-configuration", verify=False)
    client.post("https://sim.local/token", data={"grant_type": "client_credentials"})

    assert seen == ["/sim/ca.pem", "/sim/ca.pem"]


# --- certificate credential ------------------------------------------------------------------


def test_certificate_credential_computes_the_thumbprint(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pc-app")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ) + cert.public_bytes(serialization.Encoding.PEM)
    path = tmp_path / "app.pem"
    path.write_bytes(pem)

    credential = certificate_credential(path, None)

    expected = hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    assert credential["thumbprint"] == expected
    assert "PRIVATE KEY" in credential["private_key"]
    assert certificate_credential(path, "ab:cd")["thumbprint"] == "ABCD"

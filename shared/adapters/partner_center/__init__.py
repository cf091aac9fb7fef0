"""The Partner Center REST client (msal, retries, paging, idempotency) and its factory."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

import httpx

from shared.adapters.partner_center.auth import MsalConfig, MsalTokenProvider, TokenProvider
from shared.adapters.partner_center.client import PartnerCenterClient
from shared.adapters.partner_center.transport import PartnerCenterTransport, RetryPolicy
from shared.adapters.partner_center.usage import AzureUsageClient, NoCredentials, storage_http

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.ports import PartnerCenter, RequestBudget

    def _implements_port(client: PartnerCenterClient) -> PartnerCenter:
        # mypy proves here that the client satisfies the services' protocol.
        return client


__all__ = [
    "MsalConfig",
    "MsalTokenProvider",
    "PartnerCenterClient",
    "PartnerCenterTransport",
    "RetryPolicy",
    "TokenProvider",
    "build_partner_center",
]


def build_partner_center(
    settings: Settings,
    *,
    tokens: TokenProvider | None = None,
    http: httpx.Client | None = None,
    budget: RequestBudget | None = None,
) -> PartnerCenterClient:
    """The process's Partner Center client from the settings (call once; it pools connections).

    `budget`: the request budget every attempt takes a token from (bootstrap passes the shared
    one when PARTNER_CENTER_REQUESTS_PER_MINUTE > 0); without it calls are not paced.
    """
    ca_path = settings.partner_center_ca_cert_path
    if tokens is None:
        secret = settings.partner_center_client_secret
        refresh = settings.partner_center_refresh_token
        tokens = MsalTokenProvider(
            MsalConfig(
                authority=settings.partner_center_authority,
                tenant_id=settings.partner_center_tenant_id,
                client_id=settings.partner_center_client_id,
                client_secret=secret.get_secret_value() if secret else None,
                certificate_path=settings.partner_center_certificate_path,
                certificate_thumbprint=settings.partner_center_certificate_thumbprint,
                refresh_token=refresh.get_secret_value() if refresh else None,
                ca_cert_path=ca_path,
                timeout_seconds=settings.partner_center_timeout_seconds,
            )
        )
    # An explicit SSLContext: httpx then ignores SSL_CERT_FILE and friends, so the simulator's
    # CA is trusted exactly when configured, and the system store otherwise.
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=str(ca_path)) if ca_path else True
    )
    timeout = httpx.Timeout(
        settings.partner_center_timeout_seconds,
        connect=settings.partner_center_connect_timeout_seconds,
    )
    if http is None:
        http = httpx.Client(
            base_url=settings.partner_center_api_base_url.rstrip("/"),
            verify=verify,
            timeout=timeout,
            # Every connection kept: one closed and opened again is a TLS handshake on both sides.
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=20),
            follow_redirects=False,
        )
    retry = RetryPolicy(
        max_attempts=settings.partner_center_max_attempts,
        max_elapsed_seconds=settings.partner_center_max_retry_seconds,
        backoff_base_seconds=settings.partner_center_backoff_base_seconds,
        backoff_cap_seconds=settings.partner_center_backoff_cap_seconds,
    )
    transport = PartnerCenterTransport(
        http, tokens, locale=settings.partner_center_locale, retry=retry, budget=budget
    )
    # Usage export blobs: another host (Azure Storage), the SAS token as the only credential,
    # the same retries, and no Partner Center budget spent on them.
    blobs = PartnerCenterTransport(
        storage_http(httpx.Client(verify=verify, timeout=timeout, follow_redirects=False)),
        NoCredentials(),
        retry=retry,
    )
    usage = AzureUsageClient(
        transport,
        blobs,
        graph_base_url=settings.partner_center_graph_url,
        scope=settings.partner_center_graph_scope,
    )
    return PartnerCenterClient(
        transport,
        price_sheet_base_url=settings.partner_center_price_sheet_base_url,
        scope=settings.partner_center_scope,
        price_sheet_scope=settings.partner_center_price_sheet_scope,
        poll_interval_seconds=settings.partner_center_poll_interval_seconds,
        poll_timeout_seconds=settings.partner_center_poll_timeout_seconds,
        usage=usage,
    )

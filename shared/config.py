"""App settings, read from the environment (Function App settings / local.settings.json)."""

from __future__ import annotations

import json
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.domain.identity import SignInKind

Environment = Literal["local", "test", "production"]

_AZURITE_HOSTS = {"127.0.0.1", "localhost", "azurite", "host.docker.internal", "::1"}


def is_azurite_connection_string(conn: str) -> bool:
    """Whether a storage connection string points at a local emulator (Azurite)."""
    if "UseDevelopmentStorage=true" in conn:
        return True
    parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
    endpoints = [v for k, v in parts.items() if k.endswith("Endpoint")]
    return bool(endpoints) and all(urlparse(e).hostname in _AZURITE_HOSTS for e in endpoints)


class TrustedIssuer(BaseModel):
    """One issuer whose tokens the app accepts (an entry of AUTH_ISSUERS)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    # The `iss` claim; `{tenantid}` stands for any tenant, which must equal the `tid` claim.
    issuer: str = Field(min_length=1)
    jwks_uri: str = Field(pattern=r"^https?://")
    audience: str = Field(min_length=1)
    kind: SignInKind


class Settings(BaseSettings):
    """Every setting the app reads; names are the app-setting names."""

    model_config = SettingsConfigDict(
        extra="ignore", populate_by_name=True, case_sensitive=False, env_ignore_empty=True
    )

    environment: Environment = Field("production", alias="APP_ENVIRONMENT")

    # Storage: a connection string (Azurite only) or a managed identity in Azure.
    storage_connection_string: SecretStr | None = Field(None, alias="AzureWebJobsStorage")
    storage_account_name: str | None = Field(None, alias="AzureWebJobsStorage__accountName")
    storage_client_id: str | None = Field(None, alias="AzureWebJobsStorage__clientId")
    table_prefix: str = Field("", alias="TABLE_PREFIX", pattern=r"^[A-Za-z]{0,20}$")

    # Outbox: how often the sweeper runs and how old a row must be before it is re-sent.
    outbox_sweep_schedule: str = Field("0 */1 * * * *", alias="OUTBOX_SWEEP_SCHEDULE")
    outbox_min_age_seconds: int = Field(60, alias="OUTBOX_MIN_AGE_SECONDS", ge=0)

    # Housekeeping: the watchdog over records in transient states, and retention.
    housekeeping_schedule: str = Field("0 */5 * * * *", alias="HOUSEKEEPING_SCHEDULE")
    watchdog_deadline_minutes: int = Field(30, alias="WATCHDOG_DEADLINE_MINUTES", ge=1)
    retention_days: int = Field(30, alias="RETENTION_DAYS", ge=1)

    # Reminders: the daily digest of cancellation windows closing, renewals and trials ending.
    reminder_schedule: str = Field("0 0 7 * * *", alias="REMINDER_SCHEDULE")

    # Partner Center (the simulator locally; api.partnercenter.microsoft.com in Azure).
    partner_center_api_base_url: str = Field(
        "https://api.partnercenter.microsoft.com", alias="PARTNER_CENTER_API_BASE_URL"
    )
    partner_center_price_sheet_base_url: str = Field(
        "https://api.partner.microsoft.com", alias="PARTNER_CENTER_PRICE_SHEET_BASE_URL"
    )
    partner_center_authority: str = Field(
        "https://login.microsoftonline.com", alias="PARTNER_CENTER_AUTHORITY"
    )
    partner_center_tenant_id: str = Field("", alias="PARTNER_CENTER_TENANT_ID")
    partner_center_client_id: str = Field("", alias="PARTNER_CENTER_CLIENT_ID")
    partner_center_client_secret: SecretStr | None = Field(
        None, alias="PARTNER_CENTER_CLIENT_SECRET"
    )
    partner_center_ca_cert_path: Path | None = Field(None, alias="PARTNER_CENTER_CA_CERT_PATH")
    # Certificate credential instead of the secret: a PEM with the private key (and the
    # certificate, from which the thumbprint is computed when the setting is empty).
    partner_center_certificate_path: Path | None = Field(
        None, alias="PARTNER_CENTER_CERTIFICATE_PATH"
    )
    partner_center_certificate_thumbprint: str | None = Field(
        None, alias="PARTNER_CENTER_CERTIFICATE_THUMBPRINT"
    )
    # App+user (Secure Application Model): operations that need a user run on this refresh
    # token when it is set, and app-only otherwise.
    partner_center_refresh_token: SecretStr | None = Field(
        None, alias="PARTNER_CENTER_REFRESH_TOKEN"
    )
    partner_center_scope: str = Field(
        "https://api.partnercenter.microsoft.com/.default", alias="PARTNER_CENTER_SCOPE"
    )
    partner_center_price_sheet_scope: str = Field(
        "https://api.partner.microsoft.com/.default", alias="PARTNER_CENTER_PRICE_SHEET_SCOPE"
    )
    # Microsoft Graph, where Partner Center's partner billing reports (the asynchronous Azure
    # usage export) live; its own token audience (application permission
    # PartnerBilling.Read.All on the same app registration).
    partner_center_graph_url: str = Field(
        "https://graph.microsoft.com/v1.0", alias="PARTNER_CENTER_GRAPH_URL"
    )
    partner_center_graph_scope: str = Field(
        "https://graph.microsoft.com/.default", alias="PARTNER_CENTER_GRAPH_SCOPE"
    )
    partner_center_locale: str = Field("en-US", alias="PARTNER_CENTER_LOCALE")
    partner_center_connect_timeout_seconds: float = Field(
        10.0, alias="PARTNER_CENTER_CONNECT_TIMEOUT_SECONDS", gt=0
    )
    partner_center_timeout_seconds: float = Field(
        60.0, alias="PARTNER_CENTER_TIMEOUT_SECONDS", gt=0
    )
    partner_center_max_attempts: int = Field(5, alias="PARTNER_CENTER_MAX_ATTEMPTS", ge=1)
    partner_center_max_retry_seconds: float = Field(
        120.0, alias="PARTNER_CENTER_MAX_RETRY_SECONDS", ge=0
    )
    partner_center_backoff_base_seconds: float = Field(
        1.0, alias="PARTNER_CENTER_BACKOFF_BASE_SECONDS", ge=0
    )
    partner_center_backoff_cap_seconds: float = Field(
        30.0, alias="PARTNER_CENTER_BACKOFF_CAP_SECONDS", ge=0
    )
    # The partner tenant's request budget, shared by every instance (Microsoft documents 500
    # requests/minute for customers, orders and subscriptions); 0 turns pacing off.
    partner_center_requests_per_minute: int = Field(
        500, alias="PARTNER_CENTER_REQUESTS_PER_MINUTE", ge=0
    )
    partner_center_poll_interval_seconds: float = Field(
        5.0, alias="PARTNER_CENTER_POLL_INTERVAL_SECONDS", ge=0
    )
    partner_center_poll_timeout_seconds: float = Field(
        300.0, alias="PARTNER_CENTER_POLL_TIMEOUT_SECONDS", ge=0
    )
    # Local runs and tests only: the platform's clock follows the Partner Center simulator's
    # (`/_sim/clock` at PARTNER_CENTER_API_BASE_URL), so advancing it moves the NCE windows.
    partner_center_simulated_clock: bool = Field(False, alias="PARTNER_CENTER_SIMULATED_CLOCK")

    # Catalog: the daily import of Microsoft's catalog and price sheet, per market.
    catalog_import_schedule: str = Field("0 30 2 * * *", alias="CATALOG_IMPORT_SCHEDULE")
    catalog_markets: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["CZ"], alias="CATALOG_MARKETS"
    )

    @field_validator("catalog_markets", mode="before")
    @classmethod
    def _markets(cls, value: object) -> object:
        # A plain "CZ,SK" reads better in app settings than a JSON list; both are accepted.
        if isinstance(value, str):
            text = value.strip()
            items = json.loads(text) if text.startswith("[") else text.split(",")
            return [str(m).strip().upper() for m in items if str(m).strip()]
        return value

    @field_validator("catalog_markets")
    @classmethod
    def _market_codes(cls, value: list[str]) -> list[str]:
        if not value or not all(len(m) == 2 and m.isalpha() and m.isupper() for m in value):
            raise ValueError("CATALOG_MARKETS: two-letter country codes, e.g. CZ or CZ,SK")
        return value

    # Orders: how the provision-order step waits (it re-enqueues itself; it never sleeps).
    order_poll_seconds: float = Field(10.0, alias="ORDER_POLL_SECONDS", ge=1)
    order_customer_wait_seconds: float = Field(30.0, alias="ORDER_CUSTOMER_WAIT_SECONDS", ge=1)
    # Quick checks of a placed order's provisioning; then 30 times slower, never Failed.
    order_max_polls: int = Field(60, alias="ORDER_MAX_POLLS", ge=1)
    # Tests only: the process exits right after this sub-step of provision-order is recorded
    # (cart, checkout, poll, subscriptions, completed), as if killed there. Refused in production.
    order_step_crash_after: str | None = Field(None, alias="ORDER_STEP_CRASH_AFTER")
    # Sync now: refused (409) for this many minutes after a reseller's last sync finished.
    sync_now_cooldown_minutes: int = Field(15, alias="SYNC_NOW_COOLDOWN_MINUTES", ge=0, le=1440)
    # Sync: the nightly mirror of each reseller's customers, subscriptions and licences.
    sync_schedule: str = Field("0 0 1 * * *", alias="SYNC_SCHEDULE")
    sync_chunk_size: int = Field(250, alias="SYNC_CHUNK_SIZE", ge=1, le=400)
    # A delta run reads each customer's licence counts at least once in this many days.
    sync_licence_max_age_days: int = Field(7, alias="SYNC_LICENCE_MAX_AGE_DAYS", ge=1, le=90)
    # Housekeeping deletes finished sync runs (and their chunks) this many days after they end.
    sync_run_retention_days: int = Field(90, alias="SYNC_RUN_RETENTION_DAYS", ge=1)
    # Ledger: the opening of the current month (live subscriptions carried into it), hourly so
    # an opening cut short is finished within the hour (an opened month costs one point read).
    ledger_schedule: str = Field("0 10 * * * *", alias="LEDGER_SCHEDULE")
    # Ledger: the daily reconciliation of the subscription records with the current month.
    ledger_reconcile_schedule: str = Field("0 40 1 * * *", alias="LEDGER_RECONCILE_SCHEDULE")
    # Tests only: the process exits right after this step of a sync run is recorded
    # (customers, chunk-writes, checkpoint), as if killed there. Refused in production.
    sync_step_crash_after: str | None = Field(None, alias="SYNC_STEP_CRASH_AFTER")
    # Azure usage: the daily import of Partner Center's usage export (NCRONTAB, UTC), the
    # partner's billing currency the export is asked in, and the wait between two polls of it.
    usage_import_schedule: str = Field("0 30 2 * * *", alias="USAGE_IMPORT_SCHEDULE")
    usage_billing_currency: str = Field(
        "EUR", alias="USAGE_BILLING_CURRENCY", pattern=r"^[A-Z]{3}$"
    )
    usage_poll_seconds: float = Field(60.0, alias="USAGE_POLL_SECONDS", ge=1)
    # Pricing: the distributor's mark-up over Microsoft's cost for resellers that have no own.
    distributor_markup_percent: Decimal = Field(
        Decimal(0), alias="DISTRIBUTOR_MARKUP_PERCENT", ge=0, le=1000, decimal_places=2
    )

    # E-mail: a drop folder of .eml files locally, SMTP in Azure.
    mail_drop_dir: Path | None = Field(None, alias="MAIL_DROP_DIR")
    mail_from: str = Field("CSP Platform <no-reply@csp.example>", alias="MAIL_FROM")
    smtp_host: str | None = Field(None, alias="SMTP_HOST")
    smtp_port: int = Field(587, alias="SMTP_PORT")
    smtp_username: str | None = Field(None, alias="SMTP_USERNAME")
    smtp_password: SecretStr | None = Field(None, alias="SMTP_PASSWORD")

    # Sign-in: trusted issuers (JSON list of {issuer, jwksUri, audience, kind}), Easy Auth.
    auth_issuers: list[TrustedIssuer] = Field(default_factory=list, alias="AUTH_ISSUERS")
    auth_easy_auth_enabled: bool = Field(False, alias="AUTH_EASY_AUTH_ENABLED")
    auth_clock_skew_seconds: int = Field(60, alias="AUTH_CLOCK_SKEW_SECONDS", ge=0, le=600)
    auth_jwks_cache_seconds: int = Field(3600, alias="AUTH_JWKS_CACHE_SECONDS", ge=0)

    # Invitations and links in e-mails; idempotent POSTs.
    invitation_valid_days: int = Field(7, alias="INVITATION_VALID_DAYS", ge=1, le=90)
    public_base_url: str = Field("", alias="PUBLIC_BASE_URL", pattern=r"^(https?://\S+)?$")
    idempotency_ttl_seconds: int = Field(86400, alias="IDEMPOTENCY_TTL_SECONDS", ge=60)

    @field_validator("auth_issuers", mode="before")
    @classmethod
    def _issuers_from_json(cls, value: object) -> object:
        # The environment gives JSON text; so may code that builds Settings from the same values.
        if isinstance(value, str):
            return json.loads(value) if value.strip() else []
        return value

    @model_validator(mode="after")
    def _auth_is_safe(self) -> Settings:
        if self.environment == "production":
            if self.order_step_crash_after:
                raise ValueError("ORDER_STEP_CRASH_AFTER is for tests; never set it in production")
            if self.sync_step_crash_after:
                raise ValueError("SYNC_STEP_CRASH_AFTER is for tests; never set it in production")
            if self.partner_center_simulated_clock:
                raise ValueError(
                    "PARTNER_CENTER_SIMULATED_CLOCK follows the local simulator's clock; "
                    "only APP_ENVIRONMENT local or test may set it"
                )
            plain = [i.jwks_uri for i in self.auth_issuers if not i.jwks_uri.startswith("https://")]
            if plain:
                raise ValueError("AUTH_ISSUERS: outside local and test, jwksUri must be https")
            if self.public_base_url.startswith("http://"):
                raise ValueError("PUBLIC_BASE_URL: outside local and test, use https")
        return self

    def storage_connection(self) -> str | None:
        """The storage connection string (Azurite), or None to use the managed identity."""
        conn = self.storage_connection_string
        value = conn.get_secret_value().strip() if conn is not None else ""
        return value or None

    @model_validator(mode="after")
    def _storage_is_safe(self) -> Settings:
        conn = self.storage_connection()
        if conn is not None:
            if not is_azurite_connection_string(conn):
                raise ValueError(
                    "AzureWebJobsStorage: account keys are refused outside Azurite; "
                    "set AzureWebJobsStorage__accountName to use the managed identity"
                )
        elif not self.storage_account_name:
            raise ValueError(
                "storage is not configured: set AzureWebJobsStorage (Azurite) "
                "or AzureWebJobsStorage__accountName (managed identity)"
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once on first use (never at import)."""
    return Settings()

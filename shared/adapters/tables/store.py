"""The Table Storage account: clients built once, tables created once per process."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import requests
import requests.adapters
import requests.utils
from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceExistsError
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableClient, TableServiceClient
from urllib3.util.retry import Retry

from shared.config import Settings

# Connections kept per storage host: the queue worker's threads (PYTHON_THREADPOOL_THREAD_COUNT,
# at most 32) times the few threads one sync chunk reads with, and the HTTP threads.
POOL_CONNECTIONS = 32


def storage_credential(settings: Settings) -> TokenCredential:
    """The managed identity (user-assigned when a client id is set) for storage in Azure."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if settings.storage_client_id:
        return ManagedIdentityCredential(client_id=settings.storage_client_id)
    return DefaultAzureCredential()


def pooled_transport(endpoint: str) -> RequestsTransport:
    """The HTTP transport of every table client of the process: as many pooled connections as
    the process has threads using storage at once (requests keeps 10 and drops the others, so a
    busy worker would open a connection per call), and the environment's proxy settings for
    the account read once, not on every request (requests re-reads the environment, ~/.netrc
    included, per call: a good part of a point read's CPU)."""
    session = requests.Session()
    session.trust_env = False
    session.proxies = dict(requests.utils.get_environ_proxies(endpoint))
    adapter = requests.adapters.HTTPAdapter(
        pool_connections=4,
        pool_maxsize=POOL_CONNECTIONS,
        max_retries=Retry(total=False, redirect=False, raise_on_status=False),
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return RequestsTransport(session=session, session_owner=True)


def account_url(settings: Settings, service: str) -> str:
    """`https://<account>.<service>.core.windows.net` for identity-based access."""
    return f"https://{settings.storage_account_name}.{service}.core.windows.net"


class TableStore:
    """Hands out table clients; each table is created the first time this process uses it."""

    def __init__(self, service: TableServiceClient, prefix: str = "") -> None:
        self.service = service
        self.prefix = prefix
        self._ready: dict[str, TableClient] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> TableStore:
        """A store for the configured account (connection string locally, identity in Azure)."""
        conn = settings.storage_connection()
        if conn is not None:
            endpoint = TableServiceClient.from_connection_string(conn).url
            kwargs.setdefault("transport", pooled_transport(endpoint))
            service = TableServiceClient.from_connection_string(conn, **kwargs)
        else:
            endpoint = account_url(settings, "table")
            kwargs.setdefault("transport", pooled_transport(endpoint))
            service = TableServiceClient(
                endpoint=endpoint, credential=storage_credential(settings), **kwargs
            )
        return cls(service, settings.table_prefix)

    def table(self, name: str) -> TableClient:
        """The client for table `name` (prefixed), created if this process has not yet."""
        full = self.prefix + name
        client = self._ready.get(full)
        if client is not None:
            return client
        with self._lock:
            client = self._ready.get(full)
            if client is None:
                with contextlib.suppress(ResourceExistsError):
                    self.service.create_table(full)
                client = self.service.get_table_client(full)
                self._ready[full] = client
        return client

    def ping(self) -> None:
        """Raise if the account cannot be reached (one cheap call)."""
        next(iter(self.service.list_tables(results_per_page=1).by_page()), None)

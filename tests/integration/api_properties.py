"""Property-based tests of the whole HTTP API against its own OpenAPI document: the machinery.

The tests are in test_api_properties_staff.py (demo's staff, then the stored-data check) and
test_api_properties_outsiders.py (anonymous, a customer user, another reseller's owner): two
modules, so that with one worker per core (a module per worker) both run at once, each against a
host of its own on its worker's Azurite.

The real app runs on the local host against the session's Azurite and Partner Center simulator,
with the demo data seeded. `/api/openapi.json` is read from that host and schemathesis generates
requests for every operation, as each of several callers (anonymous, reseller staff of `demo`
with two roles, a customer user of `demo`, the owner of another reseller). Every answer must:

- never be a 5xx;
- when 4xx, be `application/problem+json` with `type`, `title`, `status` and `detail`, and a 400
  must name the invalid fields in `errors`;
- have a status the operation documents, the content type it documents, and a body that matches
  the documented schema; invalid (negative) input must be refused with a 4xx;
- for callers outside the reseller's staff (anonymous, customer users), hold no key anywhere that
  looks like cost, margin or markup.

Generation is bounded (a fixed number of examples per operation, caller and mode, positive and
negative) and derandomized without an example database, so a run is reproducible. An anonymous
caller gets fewer examples on the operations that need a bearer token: the sign-in check refuses
it before the request's path, query, headers or body are read, so every example takes that one
path (see `_max_examples`). Afterwards nothing may be half-written or undelivered: customers
created during the run leave Provisioning, no outbox row stays behind, every customer the list
returns validates and every entity of the app's tables loads through its repository.

Path parameters are a third of the time generated and otherwise pinned to the seeded records
(reseller `demo`, its first customer, a user, a catalog product), so generated bodies reach the
services instead of stopping at 404; the customer create also gets valid bodies with generated
tenant names, so provisioning runs. Writes vary `If-Match`: none, the current ETag of the
resource (so PATCH and PUT really write), `*`, the empty tag `""`, or generated text; whatever
it is, the answer is never a 5xx, and a malformed one is a 400 naming the header.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import requests
import schemathesis
from azure.data.tables import TableServiceClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from ulid import ULID

from functions._http import encode_etag
from localdev.azurite import Azurite
from localdev.funchost.config import quiet_timers
from localdev.funchost.process import HostProcess
from localdev.partner_center_sim import SimulatorHandle
from localdev.seed import seed, seed_catalog, seed_customers
from localdev.tokens import issuers_json, serve_in_thread, token_for
from shared.adapters.tables.outbox_index import OUTBOX_END, OUTBOX_PREFIX
from shared.bootstrap import _REPOSITORIES, Container
from shared.config import Settings
from shared.domain.customers import CustomerStatus
from shared.domain.identity import RESELLER_PARTITION, SignInKind
from shared.services.customers import CustomerView
from tests.customer_bodies import new_customer_body
from tests.integration.test_partner_center_contract import UNPACED, pc_settings

ROOT = Path(__file__).resolve().parents[2]

# Examples per operation, caller and generation mode: small and fixed, so CI time stays bounded.
# API_PROPERTY_EXAMPLES=200 runs a deeper (slower) search locally.
_SCALE = int(os.environ.get("API_PROPERTY_EXAMPLES", "20"))
MAX_EXAMPLES = {GenerationMode.POSITIVE: _SCALE, GenerationMode.NEGATIVE: max(1, _SCALE // 2)}
# An anonymous caller on an operation that needs a bearer token: refused by the sign-in check
# before anything of the request is read, whatever is generated, so a few examples (pinned and
# generated path parameters, the If-Match variants) check that refusal as well as twenty would.
MAX_EXAMPLES_REFUSED_UNREAD = {
    GenerationMode.POSITIVE: max(1, _SCALE // 5),
    GenerationMode.NEGATIVE: max(1, _SCALE // 10),
}
# Callers that must never see cost or margin.
RESTRICTED = {None, "it@customer.example"}
MONEY_KEY = re.compile(r"cost|margin|markup", re.IGNORECASE)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
_PARAM = re.compile(r"\{(\w+)\}")
TENANT_NAMES = st.from_regex(r"\Ap[a-z0-9]{4,20}\Z")
STATUSES: dict[tuple[str | None, str], list[int]] = {}


@dataclass
class Api:
    """The running host, its document and what the seeded data is called."""

    host: HostProcess
    c: Container
    document: dict[str, Any]
    schema: Any
    issuer_dir: Path
    pinned: dict[str, str]
    seeded_customers: set[str]
    tokens: dict[str, str] = field(default_factory=dict)
    # Strategies by operation and mode: the same for every caller, built once.
    strategies: dict[tuple[str, GenerationMode], Any] = field(default_factory=dict)

    def token(self, email: str) -> str:
        if email not in self.tokens:
            self.tokens[email] = token_for(
                email, SignInKind.PLATFORM, state_dir=self.issuer_dir, settings=self.c.settings
            )
        return self.tokens[email]

    def auth(self, email: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(email)}"} if email else {}


def _prefix() -> str:
    digits = str(ULID())[-8:]
    return "Tprop" + "".join(chr(ord("a") + int(ch, 36) % 26) for ch in digits)


@pytest.fixture(scope="module")
def api(
    azurite: Azurite, partner_center_sim: SimulatorHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("api-properties")
    partner_center_sim.reset()
    srv, base = serve_in_thread(0, tmp / "issuer")
    pc_values = pc_settings(partner_center_sim).model_dump(by_alias=True, exclude_none=True)
    env = {
        k: v.get_secret_value() if hasattr(v, "get_secret_value") else str(v)
        for k, v in pc_values.items()
        if k.startswith("PARTNER_CENTER_")
    }
    env.update(
        {
            **quiet_timers(),
            "APP_ENVIRONMENT": "test",
            "AzureWebJobsStorage": azurite.connection_string,
            "TABLE_PREFIX": _prefix(),
            "AUTH_ISSUERS": issuers_json(base),
            "MAIL_DROP_DIR": str(tmp / "mail"),
            "PUBLIC_BASE_URL": "http://portal.test",
            "OUTBOX_SWEEP_SCHEDULE": "*/2 * * * * *",
            "HOUSEKEEPING_SCHEDULE": "0 0 0 1 1 *",
            "REMINDER_SCHEDULE": "0 0 0 1 1 *",
            "USAGE_IMPORT_SCHEDULE": "0 0 0 1 1 *",
            "SYNC_SCHEDULE": "0 0 0 1 1 *",
            "OUTBOX_MIN_AGE_SECONDS": "2",
            "CATALOG_IMPORT_SCHEDULE": "0 0 0 1 1 *",
            # Fail fast instead of retrying for minutes when the simulator is asked odd things.
            "PARTNER_CENTER_MAX_ATTEMPTS": "2",
            "PARTNER_CENTER_BACKOFF_BASE_SECONDS": "0.1",
            "PARTNER_CENTER_BACKOFF_CAP_SECONDS": "0.2",
        }
    )
    # Seeding and the catalog import are set-up: unpaced (the host gets `env`, with the budget).
    c = Container(Settings.model_validate({**env, **UNPACED}))
    seed(c)
    seed_catalog(c)
    first, second = seed_customers(c)
    sales = next(u for u in c.users.iterate("demo") if u.email == "sales@demo.example")
    product = next(e.product_id for e in c.catalog_store.load("demo").entries)
    host = HostProcess(
        cwd=ROOT,
        env={**os.environ, **env},
        settings=tmp / "none.json",
        host_json=ROOT / "tests" / "apps" / "host.json",
        log_path=tmp / "host.log",
    )
    host.start(timeout=60)
    try:
        document = httpx.get(f"{host.base_url}/api/openapi.json", timeout=10).json()
        schema = schemathesis.openapi.from_dict(document)
        yield Api(
            host=host,
            c=c,
            document=document,
            schema=schema,
            issuer_dir=tmp / "issuer",
            pinned={"r": "demo", "c": first.id, "u": sales.id, "p": product},
            seeded_customers={first.id, second.id},
        )
    finally:
        host.stop()
        srv.shutdown()
        partner_center_sim.reset()  # leave no tenants behind for the tests that follow


def _money_keys(value: Any, path: str = "$") -> list[str]:
    """Every key, at any depth, that names cost, margin or markup."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            # `seesCost: false` (on /me) says the caller may not see cost; it is no amount.
            if MONEY_KEY.search(str(key)) and not (key == "seesCost" and item is False):
                found.append(f"{path}.{key}")
            found += _money_keys(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _money_keys(item, f"{path}[{i}]")
    return found


def _header(response: Any, name: str) -> str:
    """A header of a schemathesis response (its values are lists)."""
    value = response.headers.get(name) or ""
    return str(value[0] if isinstance(value, list) else value)


def check_answer(response: Any, caller: str | None, path: str) -> None:
    """The project's own rules for every answer (beyond conformance to the document)."""
    status = response.status_code
    ctype = _header(response, "content-type")
    body: Any = None
    if response.content and ctype.split(";")[0].strip().endswith("json"):
        body = json.loads(response.content)
    if 400 <= status < 500:
        assert ctype.startswith("application/problem+json"), (
            f"{status} answered as {ctype!r} to {response.request.method} "
            f"{response.request.url}: {response.content[:200]!r}"
        )
        assert isinstance(body, dict), f"{status} without a problem body"
        missing = {"type", "title", "status", "detail"} - body.keys()
        assert not missing, f"problem without {sorted(missing)}: {body}"
        assert body["status"] == status, body
        if status == 400:
            errors = body.get("errors")
            assert errors, f"400 names no field: {body}"
            assert all(isinstance(e, dict) and e.get("field") for e in errors), body
    if caller in RESTRICTED and body is not None and not path.endswith("/openapi.json"):
        # (The OpenAPI document describes every model, staff views included; it holds no data.)
        leaked = _money_keys(body)
        assert not leaked, f"{caller or 'anonymous'} sees {leaked}"


def _etag_for(api: Api, path: str, caller: str | None) -> str | None:
    """The ETag a GET of the resource answers (the entry of a catalog product PUT)."""
    if path == f"/api/resellers/demo/users/{api.pinned['u']}":
        # No route reads one user (the list carries no ETags): take it from the table.
        found = api.c.users.find("demo", api.pinned["u"])
        return encode_etag(found.etag) if found is not None and found.etag else None
    if "/catalog/products/" in path:
        path = path.replace("/catalog/products/", "/catalog/entries/")
    status, headers, _ = api.host.request("GET", quote(path, safe="/"), None, api.auth(caller))
    return headers.get("etag") if status == 200 else None


def _conditional(operation: Any) -> bool:
    """Whether the operation reads If-Match (it documents 412 or 428)."""
    return bool({"412", "428"} & set(operation.definition.raw.get("responses", {})))


def _takes_if_match(operation: Any) -> bool:
    return str(operation.method).upper() in {"PATCH", "PUT", "DELETE", "POST"}


# What a write sends as If-Match: nothing, the current ETag (twice as often), "any version",
# the empty tag, or generated text (printable ASCII, as an HTTP header can carry it).
IF_MATCH = st.one_of(
    st.sampled_from([None, "fresh", "fresh", "*", '""']),
    # (A header value cannot start or end with white space: clients refuse to send one.)
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).filter(
        lambda v: v == v.strip()
    ),
)


def _strategy(api: Api, operation: Any, mode: GenerationMode) -> Any:
    key = (operation.label, mode)
    if key not in api.strategies:
        api.strategies[key] = _new_strategy(api, operation, mode)
    return api.strategies[key]


def _new_strategy(api: Api, operation: Any, mode: GenerationMode) -> Any:
    generated = operation.as_strategy(generation_mode=mode)
    names = _PARAM.findall(operation.path)
    pinned = {n: api.pinned[n] for n in names if n in api.pinned}
    if not pinned:
        return generated
    on_seeded = operation.as_strategy(generation_mode=mode, path_parameters=pinned)
    # Two parts in three on the seeded records, so generated bodies reach the services.
    strategies = [on_seeded, on_seeded, generated]
    if operation.label == "POST /api/resellers/{r}/customers" and mode.is_positive:
        # Random bodies almost never carry a valid IČO: also create real customers (new tenant
        # names), so provisioning through the outbox, the queue and Partner Center runs too.
        strategies.append(
            TENANT_NAMES.flatmap(
                lambda name: operation.as_strategy(
                    generation_mode=mode, path_parameters=pinned, body=new_customer_body(name)
                )
            )
        )
    return st.one_of(*strategies)


def _needs_bearer(operation: Any) -> bool:
    """Whether the document says the operation needs a bearer token (a signed-in caller)."""
    return any("bearer" in req for req in operation.definition.raw.get("security") or [])


def _max_examples(operation: Any, caller: str | None, mode: GenerationMode) -> int:
    if caller is None and _needs_bearer(operation):
        return MAX_EXAMPLES_REFUSED_UNREAD[mode]
    return MAX_EXAMPLES[mode]


def _run_operation(api: Api, operation: Any, caller: str | None, mode: GenerationMode) -> None:
    session = requests.Session()
    base_url = f"{api.host.base_url}"

    @settings(
        max_examples=_max_examples(operation, caller, mode),
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(case=_strategy(api, operation, mode), if_match=IF_MATCH)
    def run(case: Any, if_match: str | None) -> None:
        headers = api.auth(caller)
        if if_match == "fresh" and _takes_if_match(operation):
            if_match = _etag_for(api, case.formatted_path, caller)
        if if_match is not None and _takes_if_match(operation):
            headers["If-Match"] = if_match
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
        STATUSES.setdefault((caller, operation.label), []).append(response.status_code)
        check_answer(response, caller, case.formatted_path)
        if headers.get("If-Match") == '""' and _conditional(operation):
            # Refused as malformed before anything is read or written (or by the sign-in check).
            assert response.status_code in (400, 401, 403, 404), response.status_code
        case.validate_response(response, checks=CHECKS, headers=headers)

    try:
        run()
    finally:
        session.close()


def _modes(api: Api, operation: Any) -> list[GenerationMode]:
    """Negative cases need something to break: a body, a query parameter, or a path parameter
    pinned to a seeded record. A path parameter that is any string (a quote link's token) and
    nothing else leaves no invalid request to generate."""
    raw = operation.definition.raw
    breakable = [
        p for p in raw.get("parameters", []) if p.get("in") != "path" or p.get("name") in api.pinned
    ]
    if breakable or "requestBody" in raw:
        return [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    return [GenerationMode.POSITIVE]


def _operations(api: Api) -> list[Any]:
    return [result.ok() for result in api.schema.get_all_operations()]


def check_every_operation(api: Api, caller: str | None) -> None:
    """Every operation, as `caller`, positive and (where something can break) negative."""
    failures: list[str] = []
    for operation in _operations(api):
        for mode in _modes(api, operation):
            try:
                _run_operation(api, operation, caller, mode)
            except (Exception, BaseExceptionGroup) as exc:  # FailureGroup is a BaseExceptionGroup
                failures.append(f"--- {operation.label} [{mode.value}] as {caller}:\n{_told(exc)}")
    assert not failures, "\n\n".join(failures)


def _told(exc: BaseException, depth: int = 0) -> str:
    """An exception with the ones it groups (a flaky run's first failure is one of those)."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, BaseExceptionGroup) and depth < 3:
        text += "".join(
            "\n" + "  " * (depth + 1) + _told(inner, depth + 1) for inner in exc.exceptions
        )
    return text


def _outbox_rows(api: Api) -> list[str]:
    connection = api.c.settings.storage_connection_string
    assert connection is not None
    service = TableServiceClient.from_connection_string(connection.get_secret_value())
    rows = []
    for table in service.list_tables():
        if table.name.startswith(api.c.settings.table_prefix):
            rows += [
                f"{table.name}/{e['PartitionKey']}/{e['RowKey']}"
                for e in service.get_table_client(table.name).query_entities(
                    "RowKey ge @lo and RowKey lt @hi",
                    parameters={"lo": OUTBOX_PREFIX, "hi": OUTBOX_END},
                )
            ]
    return rows


def check_stored_data_is_whole(api: Api) -> None:
    """After the generated requests: nothing half-written, nothing left undelivered."""
    if not any(who == "owner@demo.example" for who, _ in STATUSES):
        pytest.skip("checks what the owner's property test wrote; run the whole module")
    owner_writes = {
        label
        for (who, label), codes in STATUSES.items()
        if who == "owner@demo.example"
        and label.split()[0] != "GET"
        and any(200 <= code < 300 for code in codes)
    }
    # The generated writes were not all refused: they reached the services and stored things.
    assert len(owner_writes) >= 4, owner_writes
    created = [c for c in api.c.customers.iterate("demo") if c.id not in api.seeded_customers]
    assert created, "the run created no customer: the create path went untested"

    # Every customer created leaves Provisioning (its queue message was sent and handled), and
    # every outbox row was dispatched.
    deadline = time.monotonic() + 60
    while any(c.status is CustomerStatus.PROVISIONING for c in api.c.customers.iterate("demo")):
        assert time.monotonic() < deadline, "customers stuck in Provisioning"
        time.sleep(0.5)
    while rows := _outbox_rows(api):
        assert time.monotonic() < deadline, f"outbox rows never dispatched: {rows}"
        time.sleep(0.5)

    # Every customer the API lists validates, and it lists every stored one.
    status, _, raw = api.host.request(
        "GET", "/api/resellers/demo/customers?pageSize=1000", None, api.auth("owner@demo.example")
    )
    assert status == 200, raw
    listed = [CustomerView.model_validate(item) for item in json.loads(raw)["items"]]
    assert {c.id for c in listed} == {c.id for c in api.c.customers.iterate("demo")}

    # Every entity of every table loads through its repository (or the catalog store).
    c = api.c
    loaded = {name: sum(1 for _ in getattr(c, name).iterate()) for name in _REPOSITORIES}
    assert loaded["resellers"] >= 2 and loaded["users"] >= 6, loaded
    for reseller in c.resellers.iterate(RESELLER_PARTITION):
        c.catalog_store.load(reseller.slug)

"""The simulator's HTTP surface: Partner Center's REST paths, the token endpoint, /_sim control."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import re
import time
import urllib.parse
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import render
from .auth import Principal, TokenService, audience_for
from .errors import ErrorCode, SimError, bad_request, not_found
from .faults import FaultInjector, RateLimiter
from .graph import GraphBilling
from .resellers import IndirectReseller
from .rules import as_whole_resource
from .state import AZURE_PLAN_PRODUCT_ID, SimState, StoredResponse

log = logging.getLogger("partner_center_sim")

MAX_PAGE_SIZE = 500
MAX_UTILIZATION_PAGE = 1000
AUDIT_RETENTION = timedelta(days=90)
REQUEST_LOG_SIZE = 20_000
_PRICE_SHEET = re.compile(
    r"^pricesheets\(Market='(?P<market>[A-Za-z]{2})',PricesheetView='(?P<view>\w+)'\)/\$value$",
    re.IGNORECASE,
)
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

Handler = Callable[[Request, Principal, bytes], Response]
# Whether one request needs an app+user token. Partner Center's pages say per operation which
# credentials it accepts ("Prerequisites"): "App+User only" refuses app-only tokens (403),
# "App or App+User" takes either; for two operations it depends on the request itself.
AppUserRule = Callable[[Request, bytes], bool]


def always_app_user(request: Request, body: bytes) -> bool:
    """An "App+User only" operation."""
    return True


def for_indirect_reseller(request: Request, body: bytes) -> bool:
    """POST /v1/customers: a customer for an indirect reseller (associatedPartnerId) needs a user;
    a direct customer of the partner does not."""
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return False  # the handler answers 400 for the body
    return isinstance(data, dict) and bool(data.get("associatedPartnerId"))


def with_indirect_reseller_filter(request: Request, body: bytes) -> bool:
    """GET /v1/customers: listing an indirect reseller's customers needs a user; the whole list
    does not. A next page carries its filter in the continuation token."""
    token = _continuation(request, "customers")
    spec = token.get("f") if token else _parse_filter(request.query_params.get("filter"))
    return bool(spec) and str(spec.get("Field", "")).lower() == "indirectreseller"


class ConnectionDropped(Exception):
    """Raised after the response headers went out, so the server closes the connection."""


class DropFilter(logging.Filter):
    """Keep injected connection drops out of the server's error log."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the log record of an injected drop."""
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ConnectionDropped)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer with Partner Center's content type."""
    return JSONResponse(body, status_code=status, headers=headers, media_type="application/json")


class _Throttled(SimError):
    def __init__(self, retry_after: int) -> None:
        super().__init__(429, 429, f"Rate limit is exceeded. Try again in {retry_after} seconds.")
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return {"statusCode": 429, "message": self.description}


def throttled(retry_after: int) -> Response:
    """Partner Center's throttling answer."""
    return json_response(
        {
            "statusCode": 429,
            "message": f"Rate limit is exceeded. Try again in {retry_after} seconds.",
        },
        429,
        headers={"Retry-After": str(retry_after)},
    )


def error_response(error: SimError) -> Response:
    """A Partner Center error body with its status (429 carries Retry-After)."""
    if isinstance(error, _Throttled):
        return throttled(error.retry_after)
    return json_response(error.body(), error.status)


class Simulator:
    """Wires state, tokens, faults and throttling into one ASGI application."""

    def __init__(
        self, state: SimState, tokens: TokenService, client_id: str, client_secret: str
    ) -> None:
        self.state = state
        self.tokens = tokens
        self.client_id = client_id
        self.client_secret = client_secret
        self.faults = FaultInjector()
        self.limiter = RateLimiter()
        self.request_log: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self.graph = GraphBilling(self)
        self.app = Starlette(
            routes=self._routes(), exception_handlers={HTTPException: self._http_error}
        )
        for route in self.app.routes:
            # Partner Center paths are case-insensitive (transitionEligibilities, ...).
            if isinstance(route, Route):
                route.path_regex = re.compile(route.path_regex.pattern, re.IGNORECASE)

    # ----------------------------------------------------------------- ASGI entry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_sim"):
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        entry: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(),
            "simTime": render.iso(self.state.clock.now()),
            "method": method,
            "path": path,
            "query": scope.get("query_string", b"").decode(),
            "requestId": headers.get("ms-requestid"),
            "correlationId": headers.get("ms-correlationid"),
            "status": None,
            "fault": None,
        }
        self.request_log.append(entry)
        decision = self.faults.decide(method, path)
        if decision.latency_ms:
            await asyncio.sleep(decision.latency_ms / 1000)
        if decision.drop == "before":
            entry["fault"] = "drop-before"
            await _start_then_drop(send, 200, [])
        if decision.error_status:
            entry["fault"], entry["status"] = "error", decision.error_status
            text = decision.error_description or {
                401: "Injected: the access token is no longer valid.",
                403: "Injected: the caller is not authorized for this operation.",
                409: "There is a pending operation on this subscription. "
                "Please try again after 24 hours.",
            }.get(decision.error_status, "Injected server error.")
            error = SimError(
                decision.error_status, decision.error_code or decision.error_status, text
            )
            await error_response(error)(scope, receive, send)
            return
        if decision.retry_after:
            entry["fault"], entry["status"] = "throttle", 429
            await throttled(decision.retry_after)(scope, receive, send)
            return
        if decision.timeout == "before":
            entry["fault"] = "timeout-before"
            await asyncio.sleep(decision.timeout_ms / 1000)
        if decision.timeout == "after":
            entry["fault"] = "timeout-after"
            held: list[Message] = []

            async def hold(message: Message) -> None:
                held.append(message)

            await self.app(scope, receive, hold)
            await asyncio.sleep(decision.timeout_ms / 1000)
            for message in held:
                if message["type"] == "http.response.start":
                    entry["status"] = message["status"]
                with contextlib.suppress(Exception):  # the caller hung up long ago
                    await send(message)
            return
        if decision.drop == "after":
            entry["fault"] = "drop-after"
            captured: list[Message] = []

            async def capture(message: Message) -> None:
                captured.append(message)

            await self.app(scope, receive, capture)
            start = next(m for m in captured if m["type"] == "http.response.start")
            entry["status"] = start["status"]
            await _start_then_drop(send, start["status"], start.get("headers", []))

        async def logged_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            await send(message)

        await self.app(scope, receive, logged_send)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 405:
            return error_response(
                SimError(405, 405, f"Method {request.method} is not allowed here.")
            )
        return error_response(not_found(f"Resource {request.url.path}"))

    # ----------------------------------------------------------------- plumbing

    def _api(
        self, handler: Handler, *, app_user: AppUserRule | None = None
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            # Read the body first: everything after it runs without awaiting, so a replayed
            # MS-RequestId can never race its first request.
            body = await request.body()
            key: str | None = None
            try:
                principal = self.tokens.verify(request.headers.get("authorization"))
                self._throttle(principal, request)
                if (
                    app_user is not None
                    and self.state.config.require_app_user
                    and not principal.is_app_user
                    and app_user(request, body)
                ):
                    raise SimError(
                        403,
                        ErrorCode.APP_USER_REQUIRED,
                        "This operation needs app+user credentials (Secure Application Model).",
                    )
                request_id = request.headers.get("ms-requestid")
                if request.method in _WRITE_METHODS and request_id:
                    key = f"{request.method} {request.url.path.lower()} {request_id.lower()}"
                    stored = self.state.replay(key)
                    if stored is not None:
                        return Response(stored.body, stored.status, headers=stored.headers)
                response = handler(request, principal, body)
            except SimError as error:
                response = error_response(error)
            if (
                key is not None
                and response.status_code < 500
                and response.status_code not in (401, 429)
            ):
                self.state.remember(
                    key,
                    StoredResponse(
                        response.status_code,
                        {
                            k: v
                            for k, v in response.headers.items()
                            if k.lower() in ("content-type", "location", "retry-after")
                        },
                        bytes(response.body),
                    ),
                )
            for name in ("ms-requestid", "ms-correlationid"):
                if request.headers.get(name):
                    response.headers[name] = request.headers[name]
            return response

        return endpoint

    def _throttle(self, principal: Principal, request: Request) -> None:
        config = self.state.config
        if config.rate_limit_per_minute <= 0:
            return
        key = principal.tenant_id
        if config.rate_limit_scope == "partner+customer":
            key += ":" + request.path_params.get("customer_id", "")
        retry_after = self.limiter.hit(key, config.rate_limit_per_minute)
        if retry_after is not None:
            raise _Throttled(retry_after)

    def _routes(self) -> list[Route]:
        api = self._api
        v1 = "/v1"
        cust = f"{v1}/customers/{{customer_id}}"
        sub = f"{cust}/subscriptions/{{subscription_id}}"
        return [
            # OAuth and discovery under the authority (https://host:port/<tenant>).
            Route("/{tenant}/v2.0/.well-known/openid-configuration", self.openid_configuration),
            Route("/{tenant}/.well-known/openid-configuration", self.openid_configuration),
            Route("/{tenant}/discovery/v2.0/keys", self.jwks),
            Route("/{tenant}/oauth2/v2.0/token", self.token, methods=["POST"]),
            Route("/{tenant}/oauth2/token", self.token, methods=["POST"]),
            # Partner Center REST. The sync's reads first: routes are tried in order, and these
            # are most of the traffic (20,000 per 10,000 customers); no other route matches them.
            Route(f"{cust}/subscriptions", api(self.list_subscriptions), methods=["GET"]),
            Route(
                f"{cust}/subscribedskus",
                api(self.subscribed_skus, app_user=always_app_user),
                methods=["GET"],
            ),
            Route(sub, api(self.get_subscription), methods=["GET"]),
            Route(
                f"{v1}/customers",
                api(self.list_customers, app_user=with_indirect_reseller_filter),
                methods=["GET"],
            ),
            Route(
                f"{v1}/customers",
                api(self.create_customer, app_user=for_indirect_reseller),
                methods=["POST"],
            ),
            Route(
                f"{v1}/customers/relationshiprequests",
                api(self.relationship_request, app_user=always_app_user),
                methods=["GET"],
            ),
            Route(cust, api(self.get_customer), methods=["GET"]),
            Route(f"{cust}/qualifications", api(self.get_qualifications), methods=["GET"]),
            Route(
                f"{v1}/relationships",
                api(self.list_relationships, app_user=always_app_user),
                methods=["GET"],
            ),
            Route(f"{v1}/domains/{{domain}}", api(self.domain_exists), methods=["HEAD", "GET"]),
            Route(f"{v1}/products", api(self.list_products), methods=["GET"]),
            Route(f"{v1}/products/{{product_id}}", api(self.get_product), methods=["GET"]),
            Route(f"{v1}/products/{{product_id}}/skus", api(self.list_skus), methods=["GET"]),
            Route(
                f"{v1}/products/{{product_id}}/skus/{{sku_id}}", api(self.get_sku), methods=["GET"]
            ),
            Route(
                f"{v1}/products/{{product_id}}/skus/{{sku_id}}/availabilities",
                api(self.list_availabilities),
                methods=["GET"],
            ),
            Route(
                f"{v1}/products/{{product_id}}/skus/{{sku_id}}/availabilities/{{availability_id}}",
                api(self.get_availability),
                methods=["GET"],
            ),
            Route(
                "/v1.0/sales/{spec:path}",
                api(self.price_sheet, app_user=always_app_user),
                methods=["GET"],
            ),
            Route(f"{cust}/carts", api(self.create_cart), methods=["POST"]),
            Route(f"{cust}/carts/{{cart_id}}", api(self.get_cart), methods=["GET"]),
            Route(f"{cust}/carts/{{cart_id}}", api(self.update_cart), methods=["PUT"]),
            Route(f"{cust}/carts/{{cart_id}}/checkout", api(self.checkout), methods=["POST"]),
            Route(f"{cust}/orders", api(self.list_orders), methods=["GET"]),
            Route(f"{cust}/orders/{{order_id}}", api(self.get_order), methods=["GET"]),
            Route(
                f"{cust}/orders/{{order_id}}/provisioningstatus",
                api(self.order_provisioning, app_user=always_app_user),
                methods=["GET"],
            ),
            Route(sub, api(self.patch_subscription), methods=["PATCH"]),
            Route(f"{sub}/operations/{{operation_id}}", api(self.get_operation), methods=["GET"]),
            Route(f"{sub}/addons", api(self.list_addons), methods=["GET"]),
            Route(
                f"{sub}/transitionEligibilities",
                api(self.transition_eligibilities),
                methods=["GET"],
            ),
            Route(f"{sub}/transitions", api(self.list_transitions), methods=["GET"]),
            Route(f"{sub}/transitions", api(self.create_transition), methods=["POST"]),
            Route(f"{sub}/utilizations/azure", api(self.azure_utilizations), methods=["GET"]),
            Route(f"{v1}/auditrecords", api(self.audit_records), methods=["GET"]),
            # Control API (not part of Partner Center; no auth).
            Route("/_sim/health", self.sim_health),
            Route("/_sim/reset", self.sim_reset, methods=["POST"]),
            Route("/_sim/config", self.sim_config, methods=["GET", "POST", "PATCH"]),
            Route("/_sim/clock", self.sim_clock, methods=["GET"]),
            Route("/_sim/clock/advance", self.sim_clock_advance, methods=["POST"]),
            Route("/_sim/seed", self.sim_seed, methods=["POST"]),
            Route("/_sim/resellers", self.sim_resellers, methods=["GET", "POST"]),
            Route("/_sim/faults", self.sim_faults, methods=["GET", "POST", "DELETE"]),
            Route("/_sim/requests", self.sim_requests, methods=["GET", "DELETE"]),
            Route("/_sim/state/summary", self.sim_summary),
            Route("/_sim/state/customers", self.sim_customers),
            Route("/_sim/state/customers/{customer_id}", self.sim_customer),
            Route("/_sim/customers", self.sim_accept_reseller, methods=["POST"]),
            Route("/_sim/customers/{customer_id}", self.sim_update_company, methods=["PATCH"]),
            Route("/_sim/customers/{customer_id}/orders", self.sim_direct_order, methods=["POST"]),
            Route(
                "/_sim/customers/{customer_id}/qualifications",
                self.sim_qualification,
                methods=["POST"],
            ),
            Route(
                "/_sim/customers/{customer_id}/subscriptions/{subscription_id}/consumed",
                self.sim_consumed,
                methods=["POST"],
            ),
            Route("/_sim/tokens/refresh", self.sim_refresh_token, methods=["POST"]),
            Route("/_sim/snapshot", self.sim_snapshot, methods=["POST"]),
            # Microsoft Graph's partner billing reports (Azure usage exports) and their blobs.
            *self.graph.routes(),
        ]

    # ----------------------------------------------------------------- OAuth

    async def openid_configuration(self, request: Request) -> Response:
        """OpenID discovery for msal (instance_discovery=False)."""
        if request.path_params["tenant"].lower() not in (
            self.tokens.tenant_id,
            "organizations",
            "common",
        ):
            return json_response(
                {"error": "invalid_tenant", "error_description": "Tenant not found."}, 400
            )
        return json_response(self.tokens.openid_configuration())

    async def jwks(self, request: Request) -> Response:
        """The token signing keys."""
        return json_response(self.tokens.jwks())

    async def token(self, request: Request) -> Response:
        """OAuth2 token endpoint: client credentials and refresh tokens."""
        # The body is application/x-www-form-urlencoded; parse it without python-multipart.
        data = dict(urllib.parse.parse_qsl((await request.body()).decode("utf-8", "replace")))
        client_id, client_secret = data.get("client_id"), data.get("client_secret")
        basic = request.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            decoded = base64.b64decode(basic[6:]).decode()
            client_id, _, client_secret = decoded.partition(":")
        grant = data.get("grant_type")
        if not client_id or not grant:
            return _oauth_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain client_id and grant_type.",
            )
        if client_id != self.client_id:
            return _oauth_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory.",
            )
        if client_secret != self.client_secret:
            return _oauth_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
        scope = data.get("scope", "")
        audience = audience_for(scope)
        if audience is None:
            return _oauth_error(
                400, "invalid_scope", 70011, f"The provided value for scope '{scope}' is not valid."
            )
        body: dict[str, Any] = {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599}
        if grant == "client_credentials":
            body["access_token"] = self.tokens.issue(audience, None, scope)
        elif grant == "refresh_token":
            refresh = data.get("refresh_token", "")
            user = self.state.refresh_token_user(refresh)
            if user is None:
                return _oauth_error(
                    400, "invalid_grant", 9002313, "The refresh token is invalid or expired."
                )
            body["access_token"] = self.tokens.issue(audience, user, scope)
            body["refresh_token"] = refresh
            body["scope"] = scope
            body["client_info"] = _b64url(
                json.dumps({"uid": user["oid"], "utid": self.tokens.tenant_id}).encode()
            )
        else:
            return _oauth_error(
                400, "unsupported_grant_type", 70003, f"The grant type '{grant}' is not supported."
            )
        return json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    # ----------------------------------------------------------------- customers

    def list_customers(self, request: Request, principal: Principal, body: bytes) -> Response:
        """GET /v1/customers with size, filter and seekOperation=next paging."""
        query = request.query_params
        token = _continuation(request, "customers")
        filter_spec = token.get("f") if token else _parse_filter(query.get("filter"))
        with self.state.session():
            customers = self.state.list_customers(
                filter_spec.get("Field") if filter_spec else None,
                filter_spec.get("Value") if filter_spec else None,
            )
            return _page(
                request,
                customers,
                lambda c: render.customer(c),
                kind="customers",
                token=token,
                extra={"f": filter_spec} if filter_spec else {},
                uri="/customers",
            )

    def get_customer(self, request: Request, principal: Principal, body: bytes) -> Response:
        """GET /v1/customers/{id}."""
        with self.state.session():
            return json_response(
                render.customer(self.state.customer(request.path_params["customer_id"]))
            )

    def get_qualifications(self, request: Request, principal: Principal, body: bytes) -> Response:
        """GET /v1/customers/{id}/qualifications: a bare array of {qualification, vettingStatus}."""
        with self.state.session():
            customer = self.state.customer(request.path_params["customer_id"])
            return json_response(render.qualifications(customer))

    def create_customer(self, request: Request, principal: Principal, body: bytes) -> Response:
        """POST /v1/customers: 201 with the admin credentials, 409 for a taken domain."""
        data = _json_object(body)
        with self.state.session() as now:
            customer = self.state.create_customer(data, now)
            return json_response(render.customer(customer, with_credentials=True), 201)

    def domain_exists(self, request: Request, principal: Principal, body: bytes) -> Response:
        """HEAD /v1/domains/{domain}: 200 when taken, 404 when free."""
        with self.state.session():
            taken = self.state.domain_taken(request.path_params["domain"])
        return Response(status_code=200 if taken else 404)

    def relationship_request(self, request: Request, principal: Principal, body: bytes) -> Response:
        """GET /v1/customers/relationshiprequests: the link a customer admin opens."""
        url = (
            "https://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship"
            f"&partnerId={self.state.config.partner_tenant_id}&msppId=0&DAP=true"
        )
        reseller = request.query_params.get("indirectResellerId")
        if reseller:
            url += f"&indirectCSPId={reseller}"
        url += "#/BillingAccounts/partner-invitation"
        return json_response(
            {"url": url, "attributes": {"objectType": "CustomerRelationshipRequest"}}
        )

    def list_relationships(self, request: Request, principal: Principal, body: bytes) -> Response:
        """GET /v1/relationships?relationship_type=IsIndirectCloudSolutionProviderOf (app+user)."""
        kind = request.query_params.get("relationship_type") or ""
        if kind.lower() != "isindirectcloudsolutionproviderof":
            raise bad_request(
                "relationship_type must be IsIndirectCloudSolutionProviderOf for a distributor."
            )
        with self.state.session():
            items = [r.to_json() for r in self.state.indirect_resellers()]
        self_uri = f"/relationships?relationship_type={kind}"
        return json_response(render.collection(items, self_uri=self_uri))

    # ----------------------------------------------------------------- catalog

    def list_products(self, request: Request, principal: Principal, body: bytes) -> Response:
        """GET /v1/products?country=&targetView=&targetSegment=."""
        country = _country(request)
        query = request.query_params
        products = self.state.catalog.list_products(
            query.get("targetView"), query.get("targetSegment")
        )
        return json_response(render.collection([render.product(p, country) for p in products]))

    def get_product(self, request: Request, principal: Principal, body: bytes) -> Response:
        """GET /v1/products/{id}."""
        country = _country(request)
        return json_response(
            render.product(self.state.catalog.product(request.path_params["product_id"]), country)
        )

    def list_skus(self, request: Request, principal: Principal, body: bytes) -> Response:
        """GET /v1/products/{id}/skus."""
        country = _country(request)
        product = self.state.catalog.product(request.path_params["product_id"])
        segment = (request.query_params.get("targetSegment") or "").lower()
        skus = [s for s in product.skus if not segment or s.availability_for(segment)]
        return json_response(render.collection([render.sku(s, country) for s in skus]))

    def get_sku(self, request: Request, principal: Principal, body: bytes) -> Response:
        """GET /v1/products/{id}/skus/{sku}."""
        country = _country(request)
        params = request.path_params
        return json_response(
            render.sku(self.state.catalog.sku(params["product_id"], params["sku_id"]), country)
        )

    def list_availabilities(self, request: Request, principal: Principal, body: bytes) -> Response:
        """GET /v1/products/{id}/skus/{sku}/availabilities."""
        country = _country(request)
        params = request.path_params
        catalog = self.state.catalog
        product = catalog.product(params["product_id"])
        sku = catalog.sku(params["product_id"], params["sku_id"])
        segment = (request.query_params.get("targetSegment") or "").lower()
        items = [
            render.availability(a, product, sku, country, self.state.config.billing_currency)
            for a in sku.availabilities
            if not segment or a.segment == segment
        ]
        return json_response(render.collection(items))

    def get_availability(self, request: Request, principal: Principal, body: bytes) -> Response:
        """GET /v1/products/{id}/skus/{sku}/availabilities/{availability}."""
        country = _country(request)
        params = request.path_params
        catalog = self.state.catalog
        product = catalog.product(params["product_id"])
        sku = catalog.sku(params["product_id"], params["sku_id"])
        for availability in sku.availabilities:
            if availability.id.lower() == params["availability_id"].lower():
                return json_response(
                    render.availability(
                        availability, product, sku, country, self.state.config.billing_currency
                    )
                )
        raise not_found(f"Availability {params['availability_id']}")

    def price_sheet(self, request: Request, principal: Principal, body: bytes) -> Response:
        """GET /v1.0/sales/pricesheets(Market='CZ',PricesheetView='updatedlicensebased')/$value."""
        match = _PRICE_SHEET.match(request.path_params["spec"])
        if match is None:
            raise not_found(f"Resource {request.url.path}")
        market, view = match["market"].upper(), match["view"].lower()
        if view not in ("updatedlicensebased", "licensebased"):
            raise bad_request(f"Price sheet view {view} is not supported.")
        if market != "CZ":
            raise not_found(f"Price sheet for market {market}")
        text = self.state.catalog.price_sheet_csv(
            market, self.state.clock.now(), request.query_params.get("currency")
        )
        return Response(
            text.encode("utf-8"),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="pricesheet_{market}_{view}.csv"'
            },
        )

    # ----------------------------------------------------------------- carts and orders

    def create_cart(self, request: Request, principal: Principal, body: bytes) -> Response:
        """POST /v1/customers/{c}/carts: 201."""
        data = _json_object(body)
        with self.state.session() as now:
            cart = self.state.create_cart(request.path_params["customer_id"], data, now)
            return json_response(render.cart(cart), 201)

    def get_cart(self, request: Request, principal: Principal, body: bytes) -> Response:
        """GET /v1/customers/{c}/carts/{id}."""
        with self.state.session():
            params = request.path_params
            return json_response(
                render.cart(self.state.cart(params["customer_id"], params["cart_id"]))
            )

    def update_cart(self, request: Request, principal: Principal, body: bytes) -> Response:
        """PUT /v1/customers/{c}/carts/{id}: replace the lines."""
        data = _json_object(body)
        with self.state.session() as now:
            params = request.path_params
            cart = self.state.update_cart(params["customer_id"], params["cart_id"], data, now)
            return json_response(render.cart(cart))

    def checkout(self, request: Request, principal: Principal, body: bytes) -> Response:
        """POST /v1/customers/{c}/carts/{id}/checkout: 201 with {orders, orderErrors}."""
        with self.state.session() as now:
            params = request.path_params
            result = self.state.checkout(params["customer_id"], params["cart_id"], now)
            return json_response(result, 201)

    def list_orders(self, request: Request, principal: Principal, body: bytes) -> Response:
        """GET /v1/customers/{c}/orders."""
        with self.state.session() as now:
            orders = self.state.customer_orders(request.path_params["customer_id"])
            return json_response(render.collection([render.order(o, now) for o in orders]))

    def get_order(self, request: Request, principal: Principal, body: bytes) -> Response:
        """GET /v1/customers/{c}/orders/{id}."""
        with self.state.session() as now:
            params = request.path_params
            return json_response(
                render.order(self.state.order(params["customer_id"], params["order_id"]), now)
            )

    def order_provisioning(self, request: Request, principal: Principal, body: bytes) -> Response:
        """GET /v1/customers/{c}/orders/{id}/provisioningstatus."""
        with self.state.session() as now:
            params = request.path_params
            order = self.state.order(params["customer_id"], params["order_id"])
            return json_response(render.provisioning_status(order, now))

    # ----------------------------------------------------------------- subscriptions

    def list_subscriptions(self, request: Request, principal: Principal, body: bytes) -> Response:
        """GET /v1/customers/{c}/subscriptions."""
        with self.state.session() as now:
            customer_id = request.path_params["customer_id"]
            self.state.customer(customer_id)
            subs = self.state.tenant_subscriptions(customer_id)
            catalog = self.state.catalog
            return json_response(
                render.collection([render.subscription(s, catalog, now) for s in subs])
            )

    def get_subscription(self, request: Request, principal: Principal, body: bytes) -> Response:
        """GET /v1/customers/{c}/subscriptions/{s} with its ETag."""
        with self.state.session() as now:
            params = request.path_params
            sub = self.state.subscription(params["customer_id"], params["subscription_id"])
            return json_response(
                render.subscription(sub, self.state.catalog, now),
                headers={"ETag": render.etag(sub.id, sub.version)},
            )

    def patch_subscription(self, request: Request, principal: Principal, body: bytes) -> Response:
        """PATCH /v1/customers/{c}/subscriptions/{s}: the whole object; 200, or 202 + Location."""
        data = as_whole_resource(_json_object(body))
        params = request.path_params
        with self.state.session() as now:
            sub = self.state.subscription(params["customer_id"], params["subscription_id"])
            if_match = request.headers.get("if-match")
            if if_match and if_match.strip('"') not in ("*", render.etag(sub.id, sub.version)):
                raise SimError(412, ErrorCode.STALE_ETAG, "Etag is no longer valid")
            if self.state.take_async_patch():
                op = self.state.queue_patch(
                    params["customer_id"], params["subscription_id"], data, now
                )
                sub_uri = f"/customers/{op.customer_id}/subscriptions/{op.subscription_id}"
                location = f"{str(request.base_url).rstrip('/')}/v1{sub_uri}/operations/{op.id}"
                return Response(
                    status_code=202,
                    headers={
                        "Location": location,
                        "Retry-After": str(max(1, round(self.state.config.async_patch_seconds))),
                    },
                )
            sub = self.state.patch_subscription(
                params["customer_id"], params["subscription_id"], data, now
            )
            return json_response(
                render.subscription(sub, self.state.catalog, now),
                headers={"ETag": render.etag(sub.id, sub.version)},
            )

    def get_operation(self, request: Request, principal: Principal, body: bytes) -> Response:
        """GET the status of a PATCH answered with 202 (each read counts as a poll)."""
        with self.state.session() as now:
            params = request.path_params
            op = self.state.poll_patch(params["customer_id"], params["operation_id"], now)
            payload: dict[str, Any] = {
                "id": op.id,
                "status": op.status,
                "subscriptionId": op.subscription_id,
                "createdDateTime": render.iso(op.created),
                "resourceLocation": (
                    f"/customers/{op.customer_id}/subscriptions/{op.subscription_id}"
                ),
                "error": op.error,
                "attributes": {"objectType": "SubscriptionOperation"},
            }
            headers = {"Retry-After": "1"} if op.status == "inProgress" else None
            return json_response(payload, headers=headers)

    def list_addons(self, request: Request, principal: Principal, body: bytes) -> Response:
        """GET /v1/customers/{c}/subscriptions/{s}/addons."""
        with self.state.session() as now:
            params = request.path_params
            subs = self.state.addons(params["customer_id"], params["subscription_id"])
            return json_response(
                render.collection([render.subscription(s, self.state.catalog, now) for s in subs])
            )

    def transition_eligibilities(
        self, request: Request, principal: Principal, body: bytes
    ) -> Response:
        """GET …/transitionEligibilities?eligibilityType=immediate|scheduled."""
        eligibility_type = (request.query_params.get("eligibilityType") or "immediate").lower()
        if eligibility_type not in ("immediate", "scheduled"):
            raise bad_request("eligibilityType must be immediate or scheduled.")
        with self.state.session():
            params = request.path_params
            sub = self.state.subscription(params["customer_id"], params["subscription_id"])
            return json_response(render.collection(self.state.eligibilities(sub, eligibility_type)))

    def list_transitions(self, request: Request, principal: Principal, body: bytes) -> Response:
        """GET …/transitions[?operationId=]: the history, or one transition (reading one in
        progress may end it: see `SimConfig.async_transition_polls`)."""
        with self.state.session() as now:
            params = request.path_params
            records = self.state.read_transitions(
                params["customer_id"],
                params["subscription_id"],
                request.query_params.get("operationId") or None,
                now,
            )
            return json_response(render.collection([render.transition(t) for t in records]))

    def create_transition(self, request: Request, principal: Principal, body: bytes) -> Response:
        """POST …/transitions: trial conversion or upgrade; 200 with the transition."""
        data = _json_object(body)
        with self.state.session() as now:
            params = request.path_params
            record = self.state.transition(
                params["customer_id"], params["subscription_id"], data, now
            )
            return json_response(render.transition(record))

    def subscribed_skus(self, request: Request, principal: Principal, body: bytes) -> Response:
        """GET /v1/customers/{c}/subscribedskus."""
        with self.state.session():
            customer_id = request.path_params["customer_id"]
            self.state.customer(customer_id)
            subs = self.state.tenant_subscriptions(customer_id)
            return json_response(render.subscribed_skus(subs, self.state.catalog))

    def azure_utilizations(self, request: Request, principal: Principal, body: bytes) -> Response:
        """GET …/utilizations/azure: deterministic generated records, paged."""
        token = _continuation(request, "utilizations")
        query = request.query_params
        params = request.path_params
        with self.state.session():
            sub = self.state.subscription(params["customer_id"], params["subscription_id"])
        if sub.product_id != AZURE_PLAN_PRODUCT_ID:
            raise bad_request("Utilization records exist only for Azure plan subscriptions.")
        spec = token.get("u") if token else None
        if spec is None:
            start = _parse_time(query.get("start_time"), "start_time")
            end = _parse_time(query.get("end_time"), "end_time")
            if end <= start or end - start > timedelta(days=90):
                raise bad_request("end_time must be after start_time and at most 90 days later.")
            granularity = (query.get("granularity") or "daily").lower()
            if granularity not in ("daily", "hourly"):
                raise bad_request("granularity must be daily or hourly.")
            spec = {"start": start.isoformat(), "end": end.isoformat(), "g": granularity}
        records = list(
            _utilization_records(
                sub.id,
                datetime.fromisoformat(spec["start"]),
                datetime.fromisoformat(spec["end"]),
                spec["g"],
            )
        )
        return _page(
            request,
            records,
            lambda r: r,
            kind="utilizations",
            token=token,
            extra={"u": spec},
            uri=f"/customers/{sub.customer_id}/subscriptions/{sub.id}/utilizations/azure",
            max_size=MAX_UTILIZATION_PAGE,
        )

    def audit_records(self, request: Request, principal: Principal, body: bytes) -> Response:
        """GET /v1/auditrecords?startDate=&endDate=&size=&filter=: the last 90 days only (an
        older startDate is a 400), 30 days by default, newest first, paged."""
        token = _continuation(request, "audit")
        query = request.query_params
        with self.state.session() as now:
            if token:
                start = datetime.fromisoformat(token["a"]["start"])
                end = datetime.fromisoformat(token["a"]["end"])
                spec = token["a"].get("f")
            else:
                start = (
                    _parse_time(query.get("startDate"), "startDate")
                    if query.get("startDate")
                    else now - timedelta(days=30)
                )
                if start < now - AUDIT_RETENTION:
                    raise bad_request(
                        "startDate must be within the last 90 days: activity log data is "
                        "kept for 90 days."
                    )
                end = (
                    _parse_time(query.get("endDate"), "endDate")
                    if query.get("endDate")
                    else now + timedelta(seconds=1)
                )
                spec = _audit_filter(query.get("filter"))
            records = self.state.audit_between(start, end, spec)
            partner = self.state.config.partner_id
            return _page(
                request,
                records,
                lambda a: render.audit_record(a, partner),
                kind="audit",
                token=token,
                extra={"a": {"start": start.isoformat(), "end": end.isoformat(), "f": spec}},
                uri="/auditrecords",
            )

    # ----------------------------------------------------------------- control API

    async def sim_health(self, request: Request) -> Response:
        """Liveness for the launcher."""
        return json_response({"status": "ok", "now": render.iso(self.state.clock.now())})

    async def sim_reset(self, request: Request) -> Response:
        """Forget all data, faults, throttling windows and the request log; the clock goes back."""
        self.state.reset()
        self.graph.clear()
        self.faults.clear()
        self.limiter.clear()
        self.request_log.clear()
        return json_response(self.state.summary())

    async def sim_config(self, request: Request) -> Response:
        """Read or change behaviour knobs (camelCase keys of SimConfig)."""
        if request.method != "GET":
            changes = await _control_json(request)
            with self.state.lock:
                try:
                    self.state.config.update(changes)
                except SimError as error:
                    return error_response(error)
                self.state.touch()
        return json_response(self.state.config.to_json())

    async def sim_clock(self, request: Request) -> Response:
        """The simulated time and its offset from wall time."""
        return json_response(
            {
                "now": render.iso(self.state.clock.now()),
                "offsetSeconds": self.state.clock.offset.total_seconds(),
            }
        )

    async def sim_clock_advance(self, request: Request) -> Response:
        """Advance the clock by days/hours/minutes/seconds; renewals and expiries happen."""
        data = await _control_json(request)
        try:
            delta = timedelta(
                days=float(data.get("days", 0)),
                hours=float(data.get("hours", 0)),
                minutes=float(data.get("minutes", 0)),
                seconds=float(data.get("seconds", 0)),
            )
        except (TypeError, ValueError):
            return error_response(bad_request("days, hours, minutes and seconds must be numbers."))
        if delta < timedelta(0):
            return error_response(bad_request("The clock only moves forward."))
        now = self.state.advance_clock(delta)
        return json_response(
            {"now": render.iso(now), "offsetSeconds": self.state.clock.offset.total_seconds()}
        )

    async def sim_seed(self, request: Request) -> Response:
        """Create N existing customers of a reseller with subscriptions."""
        data = await _control_json(request)
        try:
            count = int(data.get("customers", 0))
            per_customer = int(data.get("subscriptionsPerCustomer", 3))
            seed = int(data["seed"]) if data.get("seed") is not None else None
        except (TypeError, ValueError):
            return error_response(
                bad_request("customers, subscriptionsPerCustomer and seed are integers.")
            )
        started = time.perf_counter()
        with self.state.session() as now:
            ids = self.state.seed(count, data.get("resellerId"), per_customer, seed, now)
        elapsed = time.perf_counter() - started
        return json_response(
            {
                "created": len(ids),
                "customerIds": ids if data.get("returnIds", len(ids) <= 1000) else [],
                "seconds": round(elapsed, 3),
                **self.state.summary(),
            },
            201,
        )

    async def sim_resellers(self, request: Request) -> Response:
        """GET the indirect resellers; POST one {id, name, mpnId, location?, state?}."""
        if request.method == "POST":
            try:
                reseller = IndirectReseller.from_json(await _control_json(request))
            except SimError as error:
                return error_response(error)
            with self.state.session():
                self.state.add_indirect_reseller(reseller)
            return json_response(reseller.to_json(), 201)
        with self.state.session():
            items = [r.to_json() for r in self.state.indirect_resellers()]
        return json_response({"items": items})

    async def sim_faults(self, request: Request) -> Response:
        """GET the fault rules, POST one (or {"rules": [...]}, {"seed": n}), DELETE all."""
        if request.method == "DELETE":
            self.faults.clear()
        elif request.method == "POST":
            data = await _control_json(request)
            if "seed" in data:
                self.faults.reseed(int(data["seed"]) if data["seed"] is not None else None)
            rules = data.get("rules")
            specs: list[dict[str, Any]] = rules if isinstance(rules, list) else [data]
            try:
                added = [self.faults.add(s).to_json() for s in specs if set(s) - {"seed"}]
            except SimError as error:
                return error_response(error)
            return json_response(
                {"added": added, "rules": [r.to_json() for r in self.faults.rules()]}, 201
            )
        return json_response({"rules": [r.to_json() for r in self.faults.rules()]})

    async def sim_requests(self, request: Request) -> Response:
        """The request log, newest last; ?requestId=, ?pathPrefix=, ?method=, ?limit= filter."""
        if request.method == "DELETE":
            self.request_log.clear()
            return json_response({"items": []})
        query = request.query_params
        items = list(self.request_log)
        if query.get("requestId"):
            wanted = query["requestId"].lower()
            items = [i for i in items if (i["requestId"] or "").lower() == wanted]
        if query.get("pathPrefix"):
            prefix = query["pathPrefix"].lower()
            items = [i for i in items if i["path"].lower().startswith(prefix)]
        if query.get("method"):
            items = [i for i in items if i["method"] == query["method"].upper()]
        limit = int(query.get("limit") or 1000)
        return json_response({"totalCount": len(items), "items": items[-limit:]})

    async def sim_summary(self, request: Request) -> Response:
        """Counts of customers, subscriptions, orders, carts, audit records."""
        return json_response(self.state.summary())

    async def sim_customers(self, request: Request) -> Response:
        """Compact customer list with order and subscription counts; ?resellerId= filters."""
        reseller = request.query_params.get("resellerId")
        with self.state.session():
            items = [
                {
                    "id": c.id,
                    "domain": c.domain,
                    "companyName": c.company_name,
                    "associatedPartnerId": c.associated_partner_id,
                    "orders": len(self.state.orders_by_customer.get(c.id, [])),
                    "subscriptions": len(self.state.subs_by_customer.get(c.id, [])),
                }
                for c in self.state.customers.values()
                if reseller is None or c.associated_partner_id == reseller
            ]
        return json_response({"totalCount": len(items), "items": items})

    async def sim_customer(self, request: Request) -> Response:
        """One customer with its subscriptions, orders and carts in Partner Center's shapes."""
        with self.state.session() as now:
            try:
                customer = self.state.customer(request.path_params["customer_id"])
            except SimError as error:
                return error_response(error)
            catalog = self.state.catalog
            carts = [c for c in self.state.carts.values() if c.customer_id == customer.id]
            return json_response(
                {
                    "customer": render.customer(customer),
                    "qualifications": customer.qualifications,
                    "subscriptions": [
                        render.subscription(s, catalog, now)
                        for s in self.state.tenant_subscriptions(customer.id)
                    ],
                    "orders": [
                        render.order(o, now) for o in self.state.customer_orders(customer.id)
                    ],
                    "carts": [render.cart(c) for c in carts],
                }
            )

    async def sim_accept_reseller(self, request: Request) -> Response:
        """A tenant that existed before accepts a reseller (what a real sandbox shows after the
        customer's admin opens the relationship link): {associatedPartnerId, companyProfile
        {domain, companyName?}, billingProfile{…}, subscriptions?: [{catalogItemId, quantity,
        termDuration, billingCycle}]} → 201 with the customer and its orders."""
        data = await _control_json(request)
        with self.state.session() as now:
            try:
                customer, orders = self.state.accept_reseller(
                    data, str(data.get("associatedPartnerId") or ""), now
                )
            except SimError as error:
                return error_response(error)
            return json_response(
                {
                    "customer": render.customer(customer),
                    "orders": [render.order(o, now) for o in orders],
                },
                201,
            )

    async def sim_direct_order(self, request: Request) -> Response:
        """An order placed in Partner Center's UI: {catalogItemId, quantity, termDuration,
        billingCycle} or {"lineItems": [...]} → 201 with the order (and an audit record)."""
        data = await _control_json(request)
        items = data.get("lineItems")
        lines: list[dict[str, Any]] = items if isinstance(items, list) else [data]
        with self.state.session() as now:
            try:
                order = self.state.place_direct_order(
                    request.path_params["customer_id"], lines, now
                )
            except SimError as error:
                return error_response(error)
            return json_response(render.order(order, now), 201)

    async def sim_update_company(self, request: Request) -> Response:
        """Company data changed in Partner Center: {billingProfile?: {...}, companyName?,
        organizationRegistrationNumber?, associatedPartnerId?: null} → the customer."""
        data = await _control_json(request)
        with self.state.session() as now:
            try:
                customer = self.state.update_company(request.path_params["customer_id"], data, now)
            except SimError as error:
                return error_response(error)
            return json_response(render.customer(customer))

    async def sim_qualification(self, request: Request) -> Response:
        """Set a segment qualification: {"segment": "education", "status": "approved"}."""
        data = await _control_json(request)
        with self.state.session():
            try:
                customer = self.state.set_qualification(
                    request.path_params["customer_id"],
                    str(data.get("segment", "")),
                    str(data.get("status", "")),
                )
            except SimError as error:
                return error_response(error)
            return json_response({"id": customer.id, "qualifications": customer.qualifications})

    async def sim_consumed(self, request: Request) -> Response:
        """Assign licences of a subscription: {"consumedUnits": n}."""
        data = await _control_json(request)
        params = request.path_params
        with self.state.session() as now:
            try:
                sub = self.state.set_consumed_units(
                    params["customer_id"],
                    params["subscription_id"],
                    int(data.get("consumedUnits", 0)),
                )
            except SimError as error:
                return error_response(error)
            return json_response(render.subscription(sub, self.state.catalog, now))

    async def sim_refresh_token(self, request: Request) -> Response:
        """Issue another app+user refresh token: {"user": "admin@partner.onmicrosoft.com"}."""
        data = await _control_json(request)
        user = str(data.get("user") or "partner-admin@sim.onmicrosoft.com")
        return json_response(
            {"refreshToken": self.state.issue_refresh_token(user), "user": user}, 201
        )

    async def sim_snapshot(self, request: Request) -> Response:
        """Write the state snapshot now."""
        saved = self.state.save(force=True)
        return json_response({"saved": saved})


async def _start_then_drop(send: Send, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    # Headers promise a body that never comes; the server then closes the connection.
    kept = [(k, v) for k, v in headers if k.lower() != b"content-length"]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*kept, (b"content-length", b"1024")],
        }
    )
    raise ConnectionDropped("injected connection drop")


def _oauth_error(status: int, error: str, code: int, description: str) -> Response:
    trace = str(uuid.uuid4())
    return json_response(
        {
            "error": error,
            "error_description": f"AADSTS{code}: {description} Trace ID: {trace}",
            "error_codes": [code],
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
            "trace_id": trace,
            "correlation_id": str(uuid.uuid4()),
        },
        status,
    )


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}.") from exc
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.")
    return data


async def _control_json(request: Request) -> dict[str, Any]:
    try:
        return _json_object(await request.body())
    except SimError:
        return {}


def _country(request: Request) -> str:
    country = request.query_params.get("country")
    if not country or not re.fullmatch(r"[A-Za-z]{2}", country):
        raise bad_request("The country query parameter (ISO 3166 alpha-2) is required.")
    return country.upper()


def _parse_filter(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        spec = json.loads(raw)
    except ValueError as exc:
        raise bad_request(
            'filter must be JSON: {"Field":..., "Value":..., "Operator":"starts_with"}.'
        ) from exc
    if not isinstance(spec, dict) or not spec.get("Field"):
        raise bad_request("filter needs Field, Value and Operator.")
    operator = str(spec.get("Operator") or "starts_with").lower()
    if operator not in ("starts_with", "startswith"):
        raise bad_request(f"Filter operator {operator} is not supported.")
    return {"Field": str(spec["Field"]), "Value": str(spec.get("Value") or "")}


def _audit_filter(raw: str | None) -> dict[str, Any] | None:
    """The audit records' filter: CustomerId / ResourceType equals, CompanyName substring."""
    if not raw:
        return None
    try:
        spec = json.loads(raw)
    except ValueError as exc:
        raise bad_request(
            'filter must be JSON: {"Field":..., "Value":..., "Operator":...}.'
        ) from exc
    if not isinstance(spec, dict):
        raise bad_request("filter needs Field, Value and Operator.")
    field_name = str(spec.get("Field") or "")
    operator = str(spec.get("Operator") or "").lower()
    allowed = {"customerid": "equals", "resourcetype": "equals", "companyname": "substring"}
    if allowed.get(field_name.lower()) != operator:
        raise bad_request(
            "filter supports CustomerId and ResourceType with equals, CompanyName with substring."
        )
    return {"Field": field_name, "Value": str(spec.get("Value") or ""), "Operator": operator}


def _parse_time(raw: str | None, name: str) -> datetime:
    if not raw:
        raise bad_request(f"{name} is required.")
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise bad_request(f"{name} must be an ISO 8601 date or time.") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _encode_token(data: dict[str, Any]) -> str:
    return _b64url(json.dumps(data, separators=(",", ":")).encode())


def _continuation(request: Request, kind: str) -> dict[str, Any] | None:
    """The decoded continuation token when the request asks for the next page."""
    seek = (request.query_params.get("seekOperation") or "").lower()
    if seek != "next":
        return None
    raw = request.headers.get("ms-continuationtoken") or request.query_params.get(
        "continuationToken"
    )
    if not raw:
        raise bad_request("seekOperation=next needs the MS-ContinuationToken header.")
    try:
        data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request("The continuation token is not valid.") from exc
    if not isinstance(data, dict) or data.get("k") != kind:
        raise bad_request("The continuation token belongs to another listing.")
    return data


def _page(
    request: Request,
    items: list[Any],
    render_item: Callable[[Any], dict[str, Any]],
    *,
    kind: str,
    token: dict[str, Any] | None,
    extra: dict[str, Any],
    uri: str,
    max_size: int = MAX_PAGE_SIZE,
) -> Response:
    if token:
        offset, size = int(token["o"]), int(token["s"])
    else:
        offset = 0
        try:
            size = int(request.query_params.get("size") or max_size)
        except ValueError as exc:
            raise bad_request("size must be an integer.") from exc
        if size < 1:
            raise bad_request("size must be positive.")
        size = min(size, max_size)
    chunk = items[offset : offset + size]
    next_offset = offset + len(chunk)
    continuation = None
    if next_offset < len(items):
        continuation = _encode_token({"k": kind, "o": next_offset, "s": size, **extra})
    body = render.collection(
        [render_item(i) for i in chunk],
        self_uri=f"{uri}?size={size}",
        next_uri=f"{uri}?size={size}&seekOperation=Next",
        continuation=continuation,
    )
    return json_response(body)


_AZURE_METERS = (
    ("D2s v3", "Virtual Machines", "Dsv3 Series", "1 Hour", "Microsoft.Compute/virtualMachines"),
    ("E10 LRS Disk", "Storage", "Standard SSD Managed Disks", "1/Month", "Microsoft.Compute/disks"),
    (
        "Standard Data Transfer Out",
        "Bandwidth",
        "Rtn Preference: MGN",
        "1 GB",
        "Microsoft.Network/publicIPAddresses",
    ),
    ("LRS Data Stored", "Storage", "Tables", "1 GB/Month", "Microsoft.Storage/storageAccounts"),
    ("vCore", "SQL Database", "General Purpose - Compute Gen5", "1 Hour", "Microsoft.Sql/servers"),
    ("B1", "Azure App Service", "Basic Plan", "1 Hour", "Microsoft.Web/serverfarms"),
)
_REGIONS = ("westeurope", "northeurope", "germanywestcentral")


def _utilization_records(
    subscription_id: str, start: datetime, end: datetime, granularity: str
) -> Any:
    """Usage that depends only on the subscription and the hour/day, so every read agrees."""
    step = timedelta(hours=1) if granularity == "hourly" else timedelta(days=1)
    digest = hashlib.sha256(subscription_id.encode()).digest()
    meters = [m for i, m in enumerate(_AZURE_METERS) if digest[i] % 3 != 0] or [_AZURE_METERS[0]]
    moment = start.replace(minute=0, second=0, microsecond=0)
    if granularity == "daily":
        moment = moment.replace(hour=0)
    while moment < end:
        for index, (name, category, subcategory, unit, provider) in enumerate(meters):
            seed = hashlib.sha256(
                f"{subscription_id}:{index}:{moment.isoformat()}".encode()
            ).digest()
            quantity = Decimal(int.from_bytes(seed[:4], "big") % 2_400_000) / Decimal(100_000)
            if granularity == "hourly":
                quantity = (quantity / 24).quantize(Decimal("0.000001"))
            region = _REGIONS[seed[4] % len(_REGIONS)]
            resource_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"meter:{name}:{category}"))
            yield {
                "usageStartTime": render.iso(moment),
                "usageEndTime": render.iso(moment + step),
                "resource": {
                    "id": resource_id,
                    "name": name,
                    "category": category,
                    "subcategory": subcategory,
                    "region": region,
                },
                "quantity": render.money(quantity),
                "unit": unit,
                "infoFields": {},
                "instanceData": {
                    "resourceUri": (
                        f"/subscriptions/{subscription_id}/resourceGroups/rg-sim"
                        f"/providers/{provider}/res{index}"
                    ),
                    "location": region,
                    "partNumber": f"SIM-{index:04d}",
                    "orderNumber": subscription_id,
                    "additionalInfo": {},
                    "tags": {},
                },
                "attributes": {"objectType": "AzureUtilizationRecord"},
            }
        moment += step


def build_app(state: SimState, tokens: TokenService, client_id: str, client_secret: str) -> ASGIApp:
    """The ASGI application for uvicorn."""
    return Simulator(state, tokens, client_id, client_secret)

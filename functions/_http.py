"""The HTTP edge: request parsing, problem+json, ETags, paging, request ids, route registry.

Every HTTP trigger is declared with `http(...)`, which registers it on its blueprint, records
its models for the OpenAPI document and wraps it so that errors map to problem+json in one
place (by exception class) and every response carries `x-request-id`.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import urlsplit

import azure.functions as func
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.bootstrap import container
from shared.domain.errors import (
    ConcurrencyConflict,
    Conflict,
    ConflictingFields,
    DomainError,
    FieldError,
    Forbidden,
    Gone,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    RuleBroken,
    TooManyRequests,
    Unauthenticated,
    UpstreamRejected,
    UpstreamUnavailable,
    ValidationFailed,
)
from shared.domain.idempotency import StoredResponse
from shared.domain.identity import SIGN_IN_REQUIRED, Principal, VerifiedToken
from shared.domain.model import ANY_VERSION, WireModel, new_id
from shared.services import idempotency, identity
from shared.services.access import PUBLIC, Rule, Scope, decide
from shared.services.identity import SignIn

log = logging.getLogger("functions.http")
B = TypeVar("B", bound=BaseModel)

PROBLEM_JSON = "application/problem+json"
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

_old_factory = logging.getLogRecordFactory()


def _record_with_request_id(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _old_factory(*args, **kwargs)
    rid = REQUEST_ID.get()
    record.request_id = rid
    if rid != "-" and isinstance(record.msg, str):
        # In the message itself: the Functions worker forwards only the message to the host,
        # so an attribute alone would not reach Application Insights.
        record.msg = f"[{rid}] {record.msg}"
    return record


# Every log line written during an invocation carries that invocation's request id.
logging.setLogRecordFactory(_record_with_request_id)

# Status and problem slug by class; the first match in MRO order wins.
_STATUS: list[tuple[type[Exception], int, str]] = [
    (ValidationFailed, 400, "validation-failed"),
    (Unauthenticated, 401, "unauthenticated"),
    (Forbidden, 403, "forbidden"),
    (NotFound, 404, "not-found"),
    (Gone, 410, "gone"),
    (TooManyRequests, 429, "too-many-requests"),
    (ConcurrencyConflict, 412, "concurrent-modification"),
    (Conflict, 409, "conflict"),
    (PreconditionFailed, 412, "precondition-failed"),
    (PreconditionRequired, 428, "precondition-required"),
    (UpstreamRejected, 502, "upstream-rejected"),
    (UpstreamUnavailable, 503, "upstream-unavailable"),
]


class PageQuery(WireModel):
    """Paging parameters of every list route (an unknown parameter is a 400 naming it, never
    silently ignored)."""

    model_config = ConfigDict(extra="forbid")

    page_size: int = Field(50, ge=1, le=1000, description="Items per page (1-1000).")
    continuation_token: str | None = Field(
        None, max_length=4096, description="Opaque token from the previous page."
    )


@dataclass(frozen=True)
class RouteSpec:
    """One HTTP function as the OpenAPI document and the access rules see it."""

    name: str
    route: str
    methods: tuple[str, ...]
    summary: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: Any = None
    status: int = 200
    tags: tuple[str, ...] = ()
    errors: tuple[int, ...] = ()
    access: Rule = PUBLIC
    idempotent: bool = False

    @property
    def conditional(self) -> bool:
        """Whether the route reads `If-Match` (it documents 412 or 428)."""
        return 412 in self.errors or 428 in self.errors


ROUTES: list[RouteSpec] = []
# Headers a replayed idempotent answer repeats (the rest are per request, like x-request-id).
_REPLAYED_HEADERS = {"etag", "location", "content-location"}


@dataclass
class Reply:
    """What a handler returns when it needs a status, headers or an ETag."""

    body: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    content_type: str | None = None


class Call:
    """One HTTP invocation as a handler sees it."""

    def __init__(
        self,
        req: func.HttpRequest,
        spec: RouteSpec,
        request_id: str,
        sign_in: SignIn | None = None,
    ) -> None:
        self.req = req
        self.spec = spec
        self.request_id = request_id
        self.sign_in = sign_in
        # Set by Idempotency-Key handling: the id this request's new resource must get.
        self.reserved_id: str | None = None

    def new_id(self) -> str:
        """The id for the resource this call creates (the same one when a key is repeated)."""
        return self.reserved_id or new_id()

    @property
    def principal(self) -> Principal:
        """The signed-in user (every route with an `allow(...)` rule has one)."""
        if self.sign_in is None or self.sign_in.principal is None:
            raise Unauthenticated(SIGN_IN_REQUIRED)
        return self.sign_in.principal

    @property
    def viewer(self) -> Principal | None:
        """The signed-in user if there is one (public routes may be called without)."""
        return self.sign_in.principal if self.sign_in is not None else None

    @property
    def token(self) -> VerifiedToken:
        """The caller's verified sign-in (routes with the `IDENTIFIED` rule and above)."""
        if self.sign_in is None:
            raise Unauthenticated(SIGN_IN_REQUIRED)
        return self.sign_in.token

    @property
    def route(self) -> Mapping[str, str]:
        """Route parameters."""
        params: Mapping[str, str] = self.req.route_params
        return params

    def header(self, name: str) -> str | None:
        """A request header (case-insensitive)."""
        value: str | None = self.req.headers.get(name)
        return value

    def body(self, model: type[B]) -> B:
        """The JSON body validated into `model`; every invalid field named in one answer."""
        raw = self.req.get_body() or b""
        if not raw.strip():
            raise ValidationFailed([FieldError("body", "a JSON body is required")])
        ctype = (self.header("content-type") or "application/json").split(";")[0].strip()
        if ctype and not (ctype == "application/json" or ctype.endswith("+json")):
            raise ValidationFailed([FieldError("body", "Content-Type must be application/json")])
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            raise validation_failed(exc, prefix="") from exc

    def query(self, model: type[B]) -> B:
        """The query string validated into `model`."""
        try:
            return model.model_validate(dict(self.req.params))
        except ValidationError as exc:
            raise validation_failed(exc, prefix="") from exc

    def if_match(self) -> str:
        """The version `If-Match` names: a storage ETag, or ANY_VERSION for `*`.

        428 when missing, 400 (naming the header) when it is not `*` nor one strong entity tag,
        412 when it is a well-formed tag this API never issued (it matches no version).
        """
        value = self.header("if-match")
        if value is None:
            raise PreconditionRequired("this change needs an If-Match header with the ETag")
        return parse_if_match(value)

    def if_match_optional(self) -> str | None:
        """The version `If-Match` names when the header is sent (None when not)."""
        return self.if_match() if self.header("if-match") is not None else None


def validation_failed(exc: ValidationError, prefix: str = "") -> ValidationFailed:
    """A pydantic error as a ValidationFailed naming each field in dotted camelCase."""
    errors = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        if err["type"] == "json_invalid":
            loc, msg = "body", "is not valid JSON"
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
        errors.append(FieldError(f"{prefix}{loc}", msg))
    return ValidationFailed(errors)


def encode_etag(storage_etag: str) -> str:
    """A storage ETag as a strong HTTP entity tag (opaque to clients)."""
    return '"' + base64.urlsafe_b64encode(storage_etag.encode()).decode().rstrip("=") + '"'


# One strong entity tag (RFC 9110 8.8.3): `"` etagc* `"`, where etagc excludes `"`, space and
# controls. Ours are never empty: `""` is a malformed If-Match here, not a tag that mismatches.
_STRONG_TAG = re.compile(r'"([\x21\x23-\x7e]+)"')
_IF_MATCH_FORMAT = 'must be "*" or the one quoted, strong ETag the resource was read with'


def decode_etag(header: str) -> str | None:
    """An HTTP entity tag back to the storage ETag, or None if it is not one of ours."""
    match = _STRONG_TAG.fullmatch(header.strip())
    if match is None:
        return None  # weak (W/), unquoted, empty or a list: never one of ours
    value = match.group(1)
    try:
        decoded = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    # Storage ETags are printable ASCII; anything else would only reach storage as a bad header.
    if not decoded or not decoded.isprintable() or encode_etag(decoded) != f'"{value}"':
        return None
    return decoded


def parse_if_match(header: str) -> str:
    """An `If-Match` value as the version a write must find (ANY_VERSION for `*`).

    Decided here, once for every conditional route: `*` is any current version (RFC 9110
    13.1.1); a weak tag (`W/"..."`), an unquoted value, an empty one (`""` included) or a list
    of tags is a 400 naming the header, since this API only issues one strong tag per resource;
    a well-formed tag that is not one of ours can match no version: 412.
    """
    value = header.strip()
    if value == ANY_VERSION:
        return ANY_VERSION
    if _STRONG_TAG.fullmatch(value) is None:
        raise ValidationFailed([FieldError("If-Match", _IF_MATCH_FORMAT)])
    etag = decode_etag(value)
    if etag is None:
        raise PreconditionFailed("If-Match does not match the current ETag")
    return etag


def _status_of(exc: Exception) -> tuple[int, str]:
    for cls, status, slug in _STATUS:
        if isinstance(exc, cls):
            return status, slug
    return 500, "internal-error"


def problem(
    status: int,
    slug: str,
    detail: str,
    *,
    instance: str = "",
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> func.HttpResponse:
    """An RFC 9457 problem response."""
    body: dict[str, Any] = {
        "type": f"/problems/{slug}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": instance,
        "requestId": REQUEST_ID.get(),
    }
    if errors is not None:
        body["errors"] = [{"field": e.field, "message": e.message} for e in errors]
    return func.HttpResponse(
        json.dumps(body), status_code=status, mimetype=PROBLEM_JSON, headers=headers or {}
    )


def problem_for(exc: Exception, instance: str) -> func.HttpResponse:
    """The problem+json answer for an exception; unknown ones are a bare 500 with a log."""
    status, slug = _status_of(exc)
    if isinstance(exc, RuleBroken):
        slug = exc.rule  # the problem's type names the rule that refused the change
    if status == 500 or not isinstance(exc, DomainError):
        log.error("unhandled error", exc_info=exc)
        return problem(500, "internal-error", "An unexpected error occurred.", instance=instance)
    headers = {}
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, UpstreamUnavailable) and exc.retry_after:
        headers["Retry-After"] = str(int(exc.retry_after + 0.999))
    if isinstance(exc, TooManyRequests):
        headers["Retry-After"] = str(max(1, int(exc.retry_after + 0.999)))
    errors = exc.errors if isinstance(exc, ValidationFailed | ConflictingFields) else None
    return problem(status, slug, exc.detail, instance=instance, errors=errors, headers=headers)


def _json(value: Any) -> str:
    if isinstance(value, BaseModel):
        return value.model_dump_json(by_alias=True)
    return json.dumps(value, default=str)


def render(result: Any, spec: RouteSpec) -> func.HttpResponse:
    """A handler's result as an HTTP response."""
    if isinstance(result, func.HttpResponse):
        return result
    reply = result if isinstance(result, Reply) else Reply(body=result, status=spec.status)
    headers = dict(reply.headers)
    if reply.etag:
        headers["ETag"] = encode_etag(reply.etag)
    if reply.body is None:
        return func.HttpResponse(
            status_code=204 if reply.status == 200 else reply.status, headers=headers
        )
    if isinstance(reply.body, bytes | str) and reply.content_type:
        return func.HttpResponse(
            reply.body, status_code=reply.status, headers=headers, mimetype=reply.content_type
        )
    return func.HttpResponse(
        _json(reply.body),
        status_code=reply.status,
        headers=headers,
        mimetype=reply.content_type or "application/json",
    )


def authorize(req: func.HttpRequest, rule: Rule) -> SignIn | None:
    """Who calls, and whether it may (the route's rule, decided by `shared.services.access`)."""
    if rule.kind == "public" or rule.host_checks_key:
        return None
    c = container()
    sign_in = identity.authenticate(
        c.token_verifier,
        c.directory,
        authorization=req.headers.get("authorization"),
        easy_auth=req.headers.get("x-ms-client-principal"),
        easy_auth_enabled=c.settings.auth_easy_auth_enabled,
    )
    if rule.kind == "signed_in":
        assert rule.action is not None
        decide(identity.require_user(sign_in), Scope.of_route(req.route_params), rule.action)
    return sign_in


def _stored(resp: func.HttpResponse) -> StoredResponse:
    return StoredResponse(
        status=resp.status_code,
        body=(resp.get_body() or b"").decode(),
        content_type=resp.mimetype,
        headers={k: v for k, v in resp.headers.items() if k.lower() in _REPLAYED_HEADERS},
    )


def _run_reserving(
    call: Call, resource_id: str, run: Callable[[], func.HttpResponse]
) -> func.HttpResponse:
    call.reserved_id = resource_id
    return run()


def _respond_once(call: Call, run: Callable[[], func.HttpResponse]) -> func.HttpResponse:
    """Run a creating request once per Idempotency-Key; a repeat gets the stored answer."""
    raw_key = call.header(idempotency.HEADER)
    if not call.spec.idempotent or raw_key is None:
        return run()
    c = container()
    viewer = call.viewer
    key = idempotency.key_hash(
        raw_key, caller=viewer.user_id if viewer else "-", operation=call.spec.name
    )
    path = call.req.url.split("?", 1)[0]
    stored, replayed = idempotency.run_once(
        c.idempotency,
        c.clock,
        scope=viewer.reseller if viewer else "-",
        key=key,
        request=idempotency.request_hash(call.req.method, path, call.req.get_body() or b""),
        ttl=timedelta(seconds=c.settings.idempotency_ttl_seconds),
        action=lambda resource_id: _stored(_run_reserving(call, resource_id, run)),
    )
    headers = dict(stored.headers)
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return func.HttpResponse(
        stored.body or None,
        status_code=stored.status,
        headers=headers,
        mimetype=stored.content_type,
    )


def _request_id(req: func.HttpRequest) -> str:
    given = req.headers.get("x-request-id") or ""
    return given if _REQUEST_ID_OK.match(given) else new_id()


def http(
    bp: func.Blueprint,
    route: str,
    methods: list[str],
    *,
    name: str,
    summary: str,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    response: Any = None,
    status: int = 200,
    tags: tuple[str, ...] = (),
    errors: tuple[int, ...] = (),
    access: Rule,
    idempotent: bool = False,
) -> Callable[[Callable[[Call], Any]], Callable[[Call], Any]]:
    """Declare an HTTP function: registered on `bp`, access-checked, in OpenAPI, errors mapped.

    `access` is required: `PUBLIC`, `IDENTIFIED`, `allow(Action.X)` or `FUNCTION_KEY`
    (shared/services/access; only the last makes the host ask for a function key).
    `idempotent` POSTs honour `Idempotency-Key`.
    """
    if access.host_checks_key:
        errors = (*errors, 401)  # the host's answer to a request without a valid key
    elif access.kind != "public":
        # Every protected route can answer these; OpenAPI should say so.
        errors = (*errors, 401, 403, 404)
    if idempotent:
        errors = (*errors, 409)
    if 412 in errors or 428 in errors:
        errors = (*errors, 400)  # a malformed If-Match
    spec = RouteSpec(
        name,
        route,
        tuple(m.upper() for m in methods),
        summary,
        body,
        query,
        response,
        status,
        tags,
        tuple(sorted(set(errors))),
        access,
        idempotent,
    )
    ROUTES.append(spec)

    def decorate(handler: Callable[[Call], Any]) -> Callable[[Call], Any]:
        def trigger(req: func.HttpRequest) -> func.HttpResponse:
            rid = _request_id(req)
            token = REQUEST_ID.set(rid)
            try:
                try:
                    call = Call(req, spec, rid, authorize(req, spec.access))
                    resp = _respond_once(call, lambda: render(handler(call), spec))
                except Exception as exc:
                    resp = problem_for(exc, instance=urlsplit(req.url).path)
                resp.headers["x-request-id"] = rid
                return resp
            finally:
                REQUEST_ID.reset(token)

        trigger.__name__ = trigger.__qualname__ = name
        trigger.__doc__ = summary
        level = func.AuthLevel.FUNCTION if access.host_checks_key else func.AuthLevel.ANONYMOUS
        bp.function_name(name)(
            bp.route(route=route, methods=list(spec.methods), auth_level=level)(trigger)
        )
        handler.trigger = trigger  # type: ignore[attr-defined]
        return handler

    return decorate

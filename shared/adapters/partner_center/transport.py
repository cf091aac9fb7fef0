"""One logical Partner Center call: headers, retries with backoff, and error mapping.

Idempotency: `MS-RequestId` is chosen once per logical call and sent unchanged on every retry of
it, which is how Partner Center recognises a repeated create after a timeout. A caller that must
survive a process restart (a queue handler) passes its own request id, stored with its record.
`MS-CorrelationId` is also fixed per logical call, so Microsoft support can group the attempts.

Rate limits: with a `budget` (the partner tenant's requests shared by every instance, see
`shared/adapters/tables/budget.py`), each attempt, retries included, first takes a token from
it, and a 429 pauses the budget for its Retry-After so every worker waits, not only the one that
was refused; this call still sleeps Retry-After itself before its retry. The current call meter
(`metering.metered()`) counts attempts sent, 429s, and the seconds waited for either.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from shared.adapters.partner_center import metering
from shared.adapters.partner_center.auth import PartnerCenterSignInFailed, TokenProvider
from shared.domain.errors import (
    ConcurrencyConflict,
    DomainError,
    NotFound,
    Throttled,
    UpstreamRejected,
    UpstreamUnavailable,
)

if TYPE_CHECKING:
    from shared.ports import RequestBudget

log = logging.getLogger(__name__)

T = TypeVar("T")

# Partner Center error codes that mean "not now" rather than "no": 800082 is a renewal in
# progress, during which every other write is refused for up to a day; 800064 (409) is a cart
# being checked out by another call (its checkout may well succeed: replay it, never re-buy).
_TRANSIENT_CODES = frozenset({"800082", "800064"})

# 408 and 429 are answers, but answers that invite a retry; every 5xx likewise.
_RETRYABLE_STATUSES = frozenset({408, 429})


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often a logical call is retried."""

    max_attempts: int = 5
    max_elapsed_seconds: float = 120.0
    backoff_base_seconds: float = 1.0
    backoff_cap_seconds: float = 30.0

    def backoff(self, retry_number: int, jitter: float) -> float:
        """Delay before retry `retry_number` (1-based): exponential, capped, half jittered."""
        ceiling = min(
            self.backoff_cap_seconds, self.backoff_base_seconds * 2.0 ** (retry_number - 1)
        )
        # "Equal jitter": half of the delay is fixed so retries never bunch up at zero, the other
        # half random so many workers throttled together don't come back in lockstep.
        return ceiling / 2 + ceiling / 2 * jitter


@dataclass
class _TokenRefused:
    reason: str


@dataclass
class _Transient:
    reason: str
    retry_after: float | None = None
    throttled: bool = False  # a 429: the partner's rate limit, shared by every instance


def new_request_id() -> str:
    """A fresh GUID for `MS-RequestId` / `MS-CorrelationId`."""
    return str(uuid.uuid4())


class PartnerCenterTransport:
    """Sends one logical call to Partner Center, retrying what may succeed on a second try."""

    def __init__(
        self,
        http: httpx.Client,
        tokens: TokenProvider,
        *,
        locale: str = "en-US",
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        new_id: Callable[[], str] = new_request_id,
        budget: RequestBudget | None = None,
    ) -> None:
        self.http = http
        self._tokens = tokens
        self._locale = locale
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.clock = clock
        self._jitter = jitter
        self.new_id = new_id
        self.budget = budget

    def call(
        self,
        method: str,
        url: str,
        *,
        scope: str,
        user: bool = False,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
        accept: Collection[int] = (),
    ) -> httpx.Response:
        """Send a call and return the (read) response; statuses in `accept` are not errors."""

        def read(response: httpx.Response) -> httpx.Response:
            response.read()
            return response

        return self.execute(
            method,
            url,
            scope=scope,
            user=user,
            params=params,
            body=body,
            headers=headers,
            request_id=request_id,
            accept=accept,
            consume=read,
        )

    def execute(
        self,
        method: str,
        url: str,
        *,
        scope: str,
        consume: Callable[[httpx.Response], T],
        user: bool = False,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
        accept: Collection[int] = (),
    ) -> T:
        """Send a call and hand the streaming response to `consume` (retried as a whole)."""
        request_id = request_id or self.new_id()
        correlation_id = self.new_id()
        content = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        started = self.clock()
        attempt = 0
        refused_tokens = 0
        while True:
            attempt += 1
            if self.budget is not None:
                # Every attempt, retries included: Partner Center counts them all.
                metering.count(waited_seconds=self.budget.acquire())
            outcome = self._attempt(
                method,
                url,
                scope=scope,
                user=user,
                params=params,
                content=content,
                headers=headers,
                request_id=request_id,
                correlation_id=correlation_id,
                accept=accept,
                consume=consume,
            )
            if isinstance(outcome, _TokenRefused):
                refused_tokens += 1
                self._tokens.forget(scope, user=user)
                if refused_tokens > 1:
                    raise PartnerCenterSignInFailed(
                        f"Partner Center {method} {_path(url)} refused a fresh token too: "
                        f"{outcome.reason}"
                    )
                continue  # a revoked or rotated token: once more with a new one, at once
            if not isinstance(outcome, _Transient):
                return outcome
            delay = self.retry.backoff(attempt, self._jitter())
            if outcome.retry_after is not None:
                # Partner Center counts immediate retries against the limit: never come back
                # sooner than it asked, and keep growing if throttling persists.
                delay = max(delay, outcome.retry_after)
            if outcome.throttled:
                metering.count(throttled=1)
                if self.budget is not None:
                    # Slow every worker down, not just this call: they share the limit.
                    pause = outcome.retry_after if outcome.retry_after is not None else delay
                    self.budget.throttled(pause)
            elapsed = self.clock() - started
            if (
                attempt >= self.retry.max_attempts
                or elapsed + delay > self.retry.max_elapsed_seconds
            ):
                # Throttled: Partner Center's rate limit, not a failure (the step waits it out).
                error = Throttled if outcome.throttled else UpstreamUnavailable
                raise error(
                    f"Partner Center {method} {_path(url)} failed after {attempt} attempt(s): "
                    f"{outcome.reason}",
                    retry_after=outcome.retry_after if outcome.retry_after is not None else delay,
                )
            log.warning(
                "Partner Center %s %s: %s; retry %d in %.1fs (MS-RequestId %s)",
                method,
                _path(url),
                outcome.reason,
                attempt,
                delay,
                request_id,
            )
            if outcome.throttled:
                metering.count(waited_seconds=delay)
            self.sleep(delay)

    def _attempt(
        self,
        method: str,
        url: str,
        *,
        scope: str,
        user: bool,
        params: Mapping[str, str | int] | None,
        content: bytes | None,
        headers: Mapping[str, str] | None,
        request_id: str,
        correlation_id: str,
        accept: Collection[int],
        consume: Callable[[httpx.Response], T],
    ) -> T | _Transient | _TokenRefused:
        try:
            token = self._tokens.access_token(scope, user=user)
        except PartnerCenterSignInFailed:
            raise  # retrying in this call will not fix a refused sign-in
        except UpstreamUnavailable as exc:
            return _Transient(f"token: {exc.detail}", exc.retry_after)
        request_headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "MS-Contract-Version": "v1",
            "MS-RequestId": request_id,
            "MS-CorrelationId": correlation_id,
            "X-Locale": self._locale,
        }
        if content is not None:
            request_headers["Content-Type"] = "application/json"
        if headers:
            request_headers.update(headers)
        request = self.http.build_request(
            method,
            url,
            params=dict(params) if params else None,
            content=content,
            headers=request_headers,
        )
        metering.count(calls=1)
        try:
            response = self.http.send(request, stream=True)
        except httpx.TimeoutException as exc:
            return _Transient(f"timeout ({type(exc).__name__})")
        except httpx.TransportError as exc:
            return _Transient(f"connection failed ({type(exc).__name__}: {exc})")
        try:
            status = response.status_code
            if status < 400 or status in accept:
                return consume(response)
            response.read()
            if status == 401:
                return _TokenRefused(error_details(response)[1])
            if status == 403:
                # The token is fine but the app or user lacks the role or consent it needs.
                raise PartnerCenterSignInFailed(
                    f"Partner Center {method} {_path(url)} forbidden: {error_details(response)[1]}"
                )
            if status in _RETRYABLE_STATUSES or status >= 500:
                return _Transient(
                    f"HTTP {status}", retry_after_seconds(response), throttled=status == 429
                )
            error = error_from_response(response)
            if isinstance(error, UpstreamUnavailable):
                return _Transient(error.detail, error.retry_after)
            raise error
        except httpx.TimeoutException as exc:
            return _Transient(f"timeout reading the response ({type(exc).__name__})")
        except httpx.TransportError as exc:
            return _Transient(f"connection lost reading the response ({type(exc).__name__})")
        finally:
            response.close()


def retry_after_seconds(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_details(response: httpx.Response) -> tuple[str | None, str]:
    """Partner Center's error `code` and description from a response body (any known shape)."""
    try:
        payload = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        text = response.text.strip()[:500]
        return None, text or f"HTTP {response.status_code}"
    if not isinstance(payload, dict):
        return None, str(payload)[:500]
    # Shapes seen: {"code", "description"} (REST API), {"error": {"code", "message"}} (the
    # api.partner.microsoft.com host), {"statusCode", "message"} (the throttling gateway).
    error = payload.get("error")
    inner: dict[str, Any] = error if isinstance(error, dict) else payload
    # Only the throttling gateway's statusCode is not a Partner Center code; leave it out.
    code = inner.get("code", payload.get("errorCode"))
    description = (
        inner.get("description")
        or inner.get("message")
        or payload.get("description")
        or payload.get("message")
        or payload.get("error_description")
        or f"HTTP {response.status_code}"
    )
    return (str(code) if code is not None else None), str(description)


def error_from_response(response: httpx.Response) -> DomainError:
    """The domain error for a Partner Center error response."""
    status = response.status_code
    code, description = error_details(response)
    where = f"Partner Center {response.request.method} {_path(str(response.request.url))}"
    if code in _TRANSIENT_CODES:
        return UpstreamUnavailable(
            f"{where}: {description} ({code})", retry_after_seconds(response)
        )
    if status in _RETRYABLE_STATUSES or status >= 500:
        return UpstreamUnavailable(f"{where}: HTTP {status}", retry_after_seconds(response))
    if status == 404:
        return NotFound(f"{where}: {description}")
    if status == 412:
        return ConcurrencyConflict(f"{where}: the resource changed since it was read")
    # 409 stays an UpstreamRejected with Partner Center's code (a duplicate domain, a subscription
    # in a state that forbids the change): services decide by code and status, and a plain
    # Conflict would lose the code. (401/403 never get here: the transport treats them as a
    # sign-in outage, see PartnerCenterSignInFailed.)
    return UpstreamRejected(f"{where}: {description}", code=code, status=status)


def _path(url: str) -> str:
    return httpx.URL(url).path or url

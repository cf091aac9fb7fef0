"""Fault injection and per-partner throttling."""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import bad_request


@dataclass(slots=True)
class FaultRule:
    """Faults for requests whose path starts with `path_prefix` (and method, if given)."""

    id: str
    path_prefix: str = ""
    methods: list[str] = field(default_factory=list)
    latency_ms: int = 0
    error_rate: float = 0.0
    error_status: int = 503
    # Partner Center's own refusal instead of a bare status, e.g. 409 + 900278 (another
    # operation pending) or 409 + 800082 (not ready): the body carries this code.
    error_code: int | None = None
    error_description: str | None = None
    throttle_rate: float = 0.0
    retry_after_seconds: int = 30
    drop_rate: float = 0.0
    drop_phase: str = "after"
    # A timeout: the answer is held back `timeout_ms` (longer than the client waits). "after":
    # the request is carried out first (Partner Center did it; the caller never heard); "before":
    # it is carried out only after the wait (a retry with the same MS-RequestId may come first).
    timeout_rate: float = 0.0
    timeout_ms: int = 30_000
    timeout_phase: str = "after"
    remaining: int | None = None

    def matches(self, method: str, path: str) -> bool:
        """Whether the rule covers this request."""
        if self.methods and method.upper() not in self.methods:
            return False
        return path.lower().startswith(self.path_prefix.lower())

    def to_json(self) -> dict[str, Any]:
        """camelCase view."""
        data = asdict(self)
        return {
            "id": data["id"],
            "pathPrefix": data["path_prefix"],
            "methods": data["methods"],
            "latencyMs": data["latency_ms"],
            "errorRate": data["error_rate"],
            "errorStatus": data["error_status"],
            "errorCode": data["error_code"],
            "errorDescription": data["error_description"],
            "throttleRate": data["throttle_rate"],
            "retryAfterSeconds": data["retry_after_seconds"],
            "dropRate": data["drop_rate"],
            "dropPhase": data["drop_phase"],
            "timeoutRate": data["timeout_rate"],
            "timeoutMs": data["timeout_ms"],
            "timeoutPhase": data["timeout_phase"],
            "count": data["remaining"],
        }


@dataclass(slots=True)
class FaultDecision:
    """What to do to one request."""

    latency_ms: int = 0
    error_status: int | None = None
    error_code: int | None = None
    error_description: str | None = None
    retry_after: int | None = None
    drop: str | None = None
    timeout: str | None = None
    timeout_ms: int = 0
    rule_id: str | None = None

    @property
    def any(self) -> bool:
        """Whether anything is injected."""
        return bool(
            self.latency_ms or self.error_status or self.retry_after or self.drop or self.timeout
        )


class FaultInjector:
    """Holds fault rules; a rule with a count applies to that many next matching requests."""

    def __init__(self, seed: int | None = None) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self._rng = random.Random(seed)

    def add(self, spec: dict[str, Any]) -> FaultRule:
        """Add a rule from its camelCase JSON."""
        try:
            rule = FaultRule(
                id=str(uuid.uuid4()),
                path_prefix=str(spec.get("pathPrefix") or ""),
                methods=[str(m).upper() for m in spec.get("methods") or []],
                latency_ms=int(spec.get("latencyMs") or 0),
                error_rate=float(spec.get("errorRate") or 0),
                error_status=int(spec.get("errorStatus") or 503),
                error_code=int(spec["errorCode"]) if spec.get("errorCode") is not None else None,
                error_description=(
                    str(spec["errorDescription"]) if spec.get("errorDescription") else None
                ),
                throttle_rate=float(spec.get("throttleRate") or 0),
                retry_after_seconds=int(spec.get("retryAfterSeconds") or 30),
                drop_rate=float(spec.get("dropRate") or 0),
                drop_phase=str(spec.get("dropPhase") or "after"),
                timeout_rate=float(spec.get("timeoutRate") or 0),
                timeout_ms=int(spec.get("timeoutMs") or 30_000),
                timeout_phase=str(spec.get("timeoutPhase") or "after"),
                remaining=int(spec["count"]) if spec.get("count") is not None else None,
            )
        except (TypeError, ValueError) as exc:
            raise bad_request(f"Invalid fault rule: {exc}") from exc
        # 401: the access token was revoked (or its signing key rotated); 403: consent withdrawn.
        if rule.error_code is not None:
            if rule.error_status not in (400, 409):
                raise bad_request("With errorCode, errorStatus must be 400 or 409.")
        elif rule.error_status not in (401, 403, 500, 502, 503, 504):
            raise bad_request("errorStatus must be 401, 403, 500, 502, 503 or 504.")
        if rule.drop_phase not in ("before", "after"):
            raise bad_request("dropPhase must be before or after.")
        if rule.timeout_phase not in ("before", "after"):
            raise bad_request("timeoutPhase must be before or after.")
        if rule.timeout_ms < 0:
            raise bad_request("timeoutMs must not be negative.")
        for rate in (rule.error_rate, rule.throttle_rate, rule.drop_rate, rule.timeout_rate):
            if not 0 <= rate <= 1:
                raise bad_request("Rates are between 0 and 1.")
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[FaultRule]:
        """The active rules."""
        with self._lock:
            return list(self._rules)

    def reseed(self, seed: int | None) -> None:
        """Make the random choices repeatable."""
        with self._lock:
            self._rng = random.Random(seed)

    def decide(self, method: str, path: str) -> FaultDecision:
        """Roll the dice for one request against every matching rule."""
        decision = FaultDecision()
        with self._lock:
            for rule in list(self._rules):
                if not rule.matches(method, path):
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
                decision.latency_ms += rule.latency_ms
                if decision.drop is None and self._rng.random() < rule.drop_rate:
                    decision.drop, decision.rule_id = rule.drop_phase, rule.id
                elif decision.error_status is None and self._rng.random() < rule.error_rate:
                    decision.error_status, decision.rule_id = rule.error_status, rule.id
                    decision.error_code = rule.error_code
                    decision.error_description = rule.error_description
                elif decision.retry_after is None and self._rng.random() < rule.throttle_rate:
                    decision.retry_after, decision.rule_id = rule.retry_after_seconds, rule.id
                elif decision.timeout is None and self._rng.random() < rule.timeout_rate:
                    decision.timeout, decision.timeout_ms = rule.timeout_phase, rule.timeout_ms
                    decision.rule_id = rule.id
        return decision


class RateLimiter:
    """A sliding one-minute window per key; refused requests count too, as Partner Center's do."""

    def __init__(self) -> None:
        self._windows: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, limit: int) -> int | None:
        """Count a request; return Retry-After seconds when over the limit."""
        if limit <= 0:
            return None
        now = time.monotonic()
        with self._lock:
            window = self._windows.setdefault(key, deque())
            while window and now - window[0] >= 60:
                window.popleft()
            over = len(window) >= limit
            window.append(now)
            if not over:
                return None
            return max(1, math.ceil(60 - (now - window[-limit])))

    def clear(self) -> None:
        """Forget all windows."""
        with self._lock:
            self._windows.clear()

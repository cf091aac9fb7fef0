"""The domain's error hierarchy; `functions/_http.py` maps each class to an HTTP status."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One invalid input field: a dotted camelCase path and what is wrong with it."""

    field: str
    message: str


class DomainError(Exception):
    """Base of every error the services raise on purpose."""

    title = "Error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title


class NotFound(DomainError):
    """The resource does not exist, or is outside the caller's world."""

    title = "Not found"


class Unauthenticated(DomainError):
    """No valid credentials came with the request."""

    title = "Unauthenticated"


class Forbidden(DomainError):
    """The caller is known but its role may not do this."""

    title = "Forbidden"


class Conflict(DomainError):
    """The request conflicts with the current state (a duplicate, a state that forbids it)."""

    title = "Conflict"


class ConcurrencyConflict(Conflict):
    """Someone else changed the record since it was read (ETag mismatch)."""

    title = "Concurrent modification"


class RuleBroken(Conflict):
    """A change Microsoft's rules do not allow (409); `rule` names it (the problem's type
    `/problems/<rule>`) and `detail` says what is possible instead."""

    title = "Not allowed by Microsoft's rules"

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(detail)
        self.rule = rule


class PreconditionFailed(DomainError):
    """An If-Match precondition did not hold."""

    title = "Precondition failed"


class PreconditionRequired(DomainError):
    """A write that needs If-Match came without it."""

    title = "Precondition required"


class ValidationFailed(DomainError):
    """The input is invalid; `errors` names every bad field."""

    title = "Validation failed"

    def __init__(self, errors: list[FieldError], detail: str = "") -> None:
        super().__init__(detail or "; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


class UpstreamUnavailable(DomainError):
    """A dependency (Partner Center, storage) failed transiently; retrying may succeed.

    `code` is Partner Center's when it answered "not now" itself (800082, 900278): the request
    was refused, not lost, so a retry needs a new MS-RequestId (the same one replays the
    refusal). Without a code the request may have been carried out: retry with the same id.
    """

    title = "Upstream unavailable"

    def __init__(
        self, detail: str = "", retry_after: float | None = None, code: str | None = None
    ) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
        self.code = code


class Throttled(UpstreamUnavailable):
    """Partner Center's rate limit (the shared request budget, or its 429s) asks for a longer
    wait than a step may sleep: nothing failed; the work goes on after `retry_after` seconds."""

    title = "Partner Center rate limit"


class UpstreamRejected(DomainError):
    """A dependency refused the request for good (e.g. Partner Center error code)."""

    title = "Rejected by upstream"

    def __init__(
        self, detail: str = "", code: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.status = status


class ConflictingFields(Conflict):
    """The input is well-formed but conflicts with what exists (a taken name); names the fields."""

    title = "Conflict"

    def __init__(self, errors: list[FieldError], detail: str = "") -> None:
        super().__init__(detail or "; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


class ClaimTaken(Conflict):
    """A unique value (a claim) is already held by another record of the partition."""

    title = "Conflict"

    def __init__(self, kind: str, value: str, owner: str) -> None:
        super().__init__(f"{value} is already held by {owner}")
        self.kind = kind
        self.value = value
        self.owner = owner


class Gone(DomainError):
    """The resource existed but is no longer usable (an answered or expired quote link)."""

    title = "Gone"


class TooManyRequests(DomainError):
    """The caller sent too many requests in a window; `retry_after` says when to try again."""

    title = "Too many requests"

    def __init__(self, detail: str = "", retry_after: float = 1.0) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

"""Why a step failed, in the two kinds that decide how it may be retried.

A step refused for good by Partner Center (a definite 4xx about the request itself: invalid
data, a taken domain) will be refused again if repeated as it was: once the data is fixed, the
retry must be a *new* request (a new `MS-RequestId`). Anything else (a timeout, a 5xx, a lost
answer, a step that never finished) may have happened at Partner Center: the retry repeats the
same request (the same `MS-RequestId`), which Partner Center answers with its first result.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.domain.errors import DomainError, NotFound, UpstreamRejected, ValidationFailed
from shared.domain.identity import ResellerIncomplete

# 4xx answers that say nothing about the request itself: sign-in or configuration trouble,
# a timeout, throttling. Repeating the same request later may well succeed.
_NOT_ABOUT_THE_REQUEST = frozenset({401, 403, 408, 429})


class FailureKind(StrEnum):
    """How a failed step may be retried."""

    REFUSED = "Refused"  # refused for good: fix the data, retry as a new request
    TRANSIENT = "Transient"  # transient or unknown: retry the same request


@dataclass(frozen=True)
class Failure:
    """A step's failure: its kind and a reason a person can act on."""

    kind: FailureKind
    reason: str

    @classmethod
    def of(cls, exc: Exception, *, prefix: str = "") -> Failure:
        """The failure an exception stands for."""
        reason = exc.detail if isinstance(exc, DomainError) else type(exc).__name__
        return cls(failure_kind(exc), f"{prefix}{reason}")


def failure_kind(exc: Exception) -> FailureKind:
    """REFUSED for a definite refusal of the request itself; TRANSIENT for anything else."""
    if isinstance(exc, UpstreamRejected):
        if exc.status is not None and exc.status in _NOT_ABOUT_THE_REQUEST:
            return FailureKind.TRANSIENT
        if exc.status is not None and not 400 <= exc.status < 500:
            return FailureKind.TRANSIENT
        return FailureKind.REFUSED
    if isinstance(exc, ValidationFailed | NotFound | ResellerIncomplete):
        return FailureKind.REFUSED
    return FailureKind.TRANSIENT

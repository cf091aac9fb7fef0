"""Partner Center error bodies and the codes the simulator answers with."""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ErrorCode(IntEnum):
    """Error codes in Partner Center's numbering.

    Codes marked "documented" come from Partner Center's documentation (see REFERENCE.md); the
    others are Partner Center-style codes chosen by the simulator where no documented code was
    found, so clients should branch on the HTTP status and treat these numbers as informative.
    """

    INVALID_CATALOG_ITEM = 10001  # documented
    QUANTITY_OUT_OF_RANGE = 10015  # documented, carries availableQuantity
    INVALID_TERM_OR_BILLING_CYCLE = 10020
    ADDON_PREREQUISITE_MISSING = 400041  # documented
    TRIAL_NOT_ALLOWED = 800050
    SEGMENT_UNDER_REVIEW = 800073  # documented range 800073-800075
    SEGMENT_NOT_QUALIFIED = 800074
    SEGMENT_REJECTED = 800075
    RENEWAL_PENDING = 800082  # documented
    QUANTITY_DECREASE_NOT_ALLOWED = 800090  # documented
    SUBSCRIPTION_SUSPENDED = 800091  # documented
    INVALID_SUBSCRIPTION_UPDATE = 800092
    SCHEDULED_CHANGE_NOT_ALLOWED = 800093
    CANCELLATION_NOT_ALLOWED = 900213  # documented
    OPERATION_PENDING = 900278  # documented (409): another operation on the subscription
    STALE_ETAG = 2055  # documented: "Etag is no longer valid"
    CUSTOMER_NOT_FOUND = 600008
    RESOURCE_NOT_FOUND = 600010
    CART_EXPIRED = 800120
    CART_ALREADY_ORDERED = 800065  # documented: the cart has already been submitted
    TENANT_PROVISIONING = 600050
    DOMAIN_TAKEN = 600041
    BAD_REQUEST = 400
    UNAUTHORIZED = 401
    APP_USER_REQUIRED = 403
    PRECONDITION_FAILED = 412
    INTERNAL_ERROR = 500
    SERVICE_UNAVAILABLE = 503


class SimError(Exception):
    """An error Partner Center would answer with: HTTP status plus its error body."""

    def __init__(self, status: int, code: ErrorCode | int, description: str, **extra: Any) -> None:
        super().__init__(description)
        self.status = status
        self.code = int(code)
        self.description = description
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The Partner Center error body."""
        return {
            "code": self.code,
            "description": self.description,
            "data": [],
            "source": "PartnerFD",
            **self.extra,
        }


def bad_request(description: str, code: ErrorCode | int = ErrorCode.BAD_REQUEST) -> SimError:
    """A 400 for a malformed or invalid request."""
    return SimError(400, code, description)


def not_found(what: str, code: ErrorCode | int = ErrorCode.RESOURCE_NOT_FOUND) -> SimError:
    """A 404 for a resource that does not exist."""
    return SimError(404, code, f"{what} was not found.")

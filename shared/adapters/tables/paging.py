"""Opaque continuation tokens for API paging over Table Storage queries."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from shared.domain.errors import FieldError, ValidationFailed


def encode_token(token: dict[str, Any] | None) -> str | None:
    """Table Storage's continuation dict → an opaque URL-safe string."""
    if not token:
        return None
    raw = json.dumps(token, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str | None) -> dict[str, Any] | None:
    """An opaque token back to Table Storage's dict; garbage → a validation error."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        value = None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in value.items()
    ):
        raise ValidationFailed([FieldError("continuationToken", "is not a valid token")])
    return value

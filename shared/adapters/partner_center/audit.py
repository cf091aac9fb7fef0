"""Partner Center's audit records mapped to `AuditEvent`, and the windows they are read in.

Microsoft keeps 90 days of audit records (an older `startDate` is a 400) and advises reading
them one day at a time for incremental work; a page lists the newest first. The client reads
day after day and sorts each day, so events come oldest first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator
from datetime import datetime, timedelta

from shared.adapters.partner_center import wire as pc
from shared.domain.sync import AuditEvent

log = logging.getLogger(__name__)

# What Partner Center keeps; reading starts a little later so a request sent a moment after
# `until` is still inside the window (Partner Center refuses the whole request otherwise).
RETENTION = timedelta(days=90)
_RETENTION_MARGIN = timedelta(hours=1)
WINDOW = timedelta(days=1)
PAGE_SIZE = 500

# customizedData keys that name the resource, most specific first.
_RESOURCE_KEYS = ("subscriptionid", "orderid", "resourceid", "subscriptionid-0")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def readable_start(since: datetime, until: datetime) -> datetime:
    """`since`, or the oldest moment Partner Center still keeps records for (logged)."""
    oldest = until - RETENTION + _RETENTION_MARGIN
    if since < oldest:
        log.warning(
            "Audit records before %s are gone (Partner Center keeps 90 days); "
            "reading from there instead of %s",
            oldest.isoformat(),
            since.isoformat(),
        )
        return oldest
    return since


def day_windows(since: datetime, until: datetime) -> Iterator[tuple[datetime, datetime]]:
    """[since, until) cut into windows of at most one day, oldest first."""
    start = since
    while start < until:
        end = min(start + WINDOW, until)
        yield start, end
        start = end


def snake(value: str) -> str:
    """An enum value as Partner Center sends it, lower_snake_case ("CreateOrder" too)."""
    return _CAMEL.sub("_", value.strip()).replace(" ", "_").replace("-", "_").lower()


def audit_event(record: pc.AuditRecord) -> AuditEvent | None:
    """The event of one record; None for a record that changed nothing (failed) or is unusable."""
    if record.operation_date is None or not record.operation_type:
        log.warning("Skipping an audit record without a date or operation: %s", record.id)
        return None
    if (record.operation_status or "").lower() == "failed":
        return None
    customer = (record.customer_id or "").strip().lower() or None
    return AuditEvent(
        id=record.id or _stable_id(record),
        at=record.operation_date,
        customer_tenant_id=customer,
        resource_type=snake(record.resource_type or "unknown"),
        operation=snake(record.operation_type),
        resource_id=_resource_id(record),
    )


def _resource_id(record: pc.AuditRecord) -> str | None:
    data = {(kv.key or "").lower(): kv.value for kv in record.customized_data if kv.value}
    for key in _RESOURCE_KEYS:
        if data.get(key):
            return str(data[key]).lower()
    try:
        value = json.loads(record.resource_new_value or "null")
    except ValueError:
        return None
    if isinstance(value, dict):
        found = value.get("Id") or value.get("id")
        return str(found).lower() if found else None
    return None


def _stable_id(record: pc.AuditRecord) -> str:
    # Microsoft's samples carry no id: the same record read twice must get the same one.
    parts = (
        record.operation_date.isoformat() if record.operation_date else "",
        record.customer_id or "",
        record.operation_type or "",
        record.resource_type or "",
        record.resource_new_value or "",
        record.resource_old_value or "",
    )
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]

"""Audit records and qualifications as the client maps them (no HTTP)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.adapters.partner_center import audit
from shared.adapters.partner_center.customers import qualification
from shared.adapters.partner_center.wire import AuditRecord, CustomerQualification
from shared.domain.customers import Qualification

AT = "2026-03-01T10:00:00.1234567Z"


def record(**fields: object) -> AuditRecord:
    data: dict[str, object] = {"operationType": "create_order", "operationDate": AT, **fields}
    return AuditRecord.model_validate(data)


def test_an_unknown_operation_type_is_kept_lower_snake_case() -> None:
    event = audit.audit_event(record(operationType="SomethingNew", resourceType="Widget"))

    assert event is not None
    assert (event.operation, event.resource_type) == ("something_new", "widget")


def test_a_record_without_customer_maps_to_none_and_gets_a_stable_id() -> None:
    first = audit.audit_event(record(customerId=None, operationType="register_application"))
    again = audit.audit_event(record(customerId=None, operationType="register_application"))

    assert first is not None and again is not None
    assert first.customer_tenant_id is None
    assert first.id == again.id
    assert first.at.tzinfo is not None


def test_the_order_id_comes_from_customized_data_or_the_new_value() -> None:
    from_data = audit.audit_event(
        record(customizedData=[{"key": "OrderId", "value": "ABC"}, {"key": "X", "value": "y"}])
    )
    from_value = audit.audit_event(record(resourceNewValue='{"Id": "DEF", "LineItems": []}'))

    assert from_data is not None and from_data.resource_id == "abc"
    assert from_value is not None and from_value.resource_id == "def"


def test_a_failed_operation_changed_nothing_and_is_skipped() -> None:
    assert audit.audit_event(record(operationStatus="failed")) is None
    assert audit.audit_event(record(operationStatus="progress")) is not None


def test_windows_are_one_day_at_most_and_cover_the_range() -> None:
    start = datetime(2026, 3, 1, 6, tzinfo=UTC)
    end = start + timedelta(days=2, hours=3)

    windows = list(audit.day_windows(start, end))

    assert windows[0][0] == start and windows[-1][1] == end
    assert all(b - a <= timedelta(days=1) for a, b in windows)
    assert all(windows[i][1] == windows[i + 1][0] for i in range(len(windows) - 1))
    assert len(windows) == 3


def test_a_start_beyond_90_days_is_moved_up() -> None:
    until = datetime(2026, 6, 1, tzinfo=UTC)

    start = audit.readable_start(until - timedelta(days=400), until)

    assert until - timedelta(days=90) < start < until - timedelta(days=89)


def test_qualification_maps_vetting_status_and_segment_names() -> None:
    entries = [
        CustomerQualification.model_validate(e)
        for e in (
            {"qualification": "Education", "vettingStatus": "InReview"},
            {"qualification": "GovernmentCommunityCloud", "vettingStatus": "Denied"},
            {"qualification": "StateOwnedEntity"},
        )
    ]

    assert qualification(entries, "education") is Qualification.PENDING
    assert qualification(entries, "government") is Qualification.REJECTED
    assert qualification(entries, "nonprofit") is Qualification.NONE
    assert qualification(entries, "StateOwnedEntity") is Qualification.APPROVED

"""The HTTP edge: problem+json by class, field names, ETags, request ids, OpenAPI."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import azure.functions as func
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from pydantic import Field

from functions._http import (
    PROBLEM_JSON,
    ROUTES,
    Call,
    RouteSpec,
    _json,
    decode_etag,
    encode_etag,
    problem_for,
)
from functions._openapi import build_openapi, openapi_path
from shared.domain.errors import (
    ConcurrencyConflict,
    Conflict,
    Forbidden,
    NotFound,
    UpstreamUnavailable,
)
from shared.domain.identity import (
    Appearance,
    Principal,
    Reseller,
    ResellerSettings,
    Role,
    SignInKind,
)
from shared.domain.model import ANY_VERSION, WireModel
from shared.services import resellers
from tests.app_index import functions, triggers

SPEC = RouteSpec("t", "things/{id}", ("POST",), "test")


class Address(WireModel):
    post_code: str = Field(pattern=r"^\d{3} ?\d{2}$")


class ThingCreate(WireModel):
    company_name: str = Field(min_length=1)
    address: Address


def request(body: bytes = b"", headers: dict[str, str] | None = None, **kw) -> func.HttpRequest:
    return func.HttpRequest("POST", "http://h/api/things/1", headers=headers or {}, body=body, **kw)


def problem_body(resp: func.HttpResponse) -> dict:
    assert resp.mimetype == PROBLEM_JSON
    return json.loads(resp.get_body())


def test_every_invalid_field_is_named_in_one_answer():
    call = Call(request(b'{"companyName": "", "address": {"postCode": "1"}}'), SPEC, "r1")
    with pytest.raises(Exception) as info:
        call.body(ThingCreate)
    resp = problem_for(info.value, "/api/things/1")
    body = problem_body(resp)
    assert resp.status_code == 400
    assert {e["field"] for e in body["errors"]} == {"companyName", "address.postCode"}
    assert body["status"] == 400 and body["type"] == "/problems/validation-failed"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"", "body"),
        (b"{not json", "body"),
        (b'{"address": {"postCode": "110 00"}}', "companyName"),
    ],
)
def test_missing_or_broken_body_is_a_400_naming_the_field(raw, field):
    with pytest.raises(Exception) as info:
        Call(request(raw), SPEC, "r").body(ThingCreate)
    body = problem_body(problem_for(info.value, "/x"))
    assert field in [e["field"] for e in body["errors"]]


def test_wrong_content_type_is_refused():
    with pytest.raises(Exception) as info:
        Call(
            request(b"a=b", {"content-type": "application/x-www-form-urlencoded"}), SPEC, "r"
        ).body(ThingCreate)
    assert problem_for(info.value, "/x").status_code == 400


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (NotFound("no"), 404),
        (Forbidden("no"), 403),
        (Conflict("dup"), 409),
        (ConcurrencyConflict("race"), 412),
        (UpstreamUnavailable("pc down", retry_after=2.5), 503),
    ],
)
def test_domain_errors_map_to_status_by_class(exc, status):
    resp = problem_for(exc, "/x")
    assert resp.status_code == status
    assert problem_body(resp)["detail"] == exc.detail


def test_retry_after_is_passed_on_when_upstream_is_throttled():
    resp = problem_for(UpstreamUnavailable("busy", retry_after=2.5), "/x")
    assert resp.headers["Retry-After"] == "3"


def test_unknown_error_is_a_500_without_internals(caplog):
    with caplog.at_level(logging.ERROR):
        resp = problem_for(RuntimeError("secret connection string xyz"), "/x")
    body = problem_body(resp)
    assert resp.status_code == 500
    assert "xyz" not in resp.get_body().decode()
    assert body["detail"] == "An unexpected error occurred."
    assert "secret connection string xyz" in caplog.text


def test_etag_round_trips_and_weak_or_foreign_tags_do_not_match():
    storage = "W/\"datetime'2026-01-01T00%3A00%3A00.1Z'\""
    header = encode_etag(storage)
    assert header.startswith('"') and "/" not in header.strip('"')
    assert decode_etag(header) == storage
    assert decode_etag("W/" + header) is None


STORAGE_ETAG = "W/\"datetime'2026-01-01T00%3A00%3A00.1Z'\""


@pytest.mark.parametrize(
    ("header", "outcome"),
    [
        ("*", ANY_VERSION),
        (" * ", ANY_VERSION),
        (encode_etag(STORAGE_ETAG), STORAGE_ETAG),
        ('""', 400),
        ("", 400),
        ("   ", 400),
        ("abc", 400),
        ('W/"abc"', 400),
        ("W/" + encode_etag(STORAGE_ETAG), 400),
        ('"abc", "def"', 400),
        ('*, "abc"', 400),
        ('"a b"', 400),
        ('"x"', 412),  # well-formed, but no version of ours
        ('"a*b"', 412),
        ('"gA"', 412),  # decodes to a byte that is no text
    ],
)
def test_if_match_is_any_version_an_etag_a_400_naming_the_header_or_a_412(header, outcome):
    call = Call(request(headers={"If-Match": header}), SPEC, "r")
    if isinstance(outcome, str):
        assert call.if_match() == outcome
        assert call.if_match_optional() == outcome
        return
    with pytest.raises(Exception) as info:
        call.if_match()
    resp = problem_for(info.value, "/x")
    assert resp.status_code == outcome
    if outcome == 400:
        assert [e["field"] for e in problem_body(resp)["errors"]] == ["If-Match"]


def test_a_route_that_reads_if_match_documents_a_400_for_a_malformed_one():
    conditional = [spec for spec in ROUTES if spec.conditional]
    assert conditional
    assert all(400 in spec.errors for spec in conditional)


def test_patch_without_if_match_needs_a_precondition():
    call = Call(request(), SPEC, "r")
    with pytest.raises(Exception) as info:
        call.if_match()
    assert problem_for(info.value, "/x").status_code == 428


def test_every_http_function_has_an_openapi_operation_and_the_document_is_valid():
    doc = build_openapi()
    validate(doc)
    http = {n: t for n, t in triggers().items() if t["type"] == "httpTrigger"}
    assert http, "the app has no HTTP functions"
    for name, trigger in http.items():
        path = openapi_path(trigger["route"])
        assert path in doc["paths"], f"{name} has no OpenAPI entry"
        for method in trigger["methods"]:
            verb = getattr(method, "value", method).lower()
            assert verb in doc["paths"][path], f"{name} {verb} undocumented"


def _answer_schema(doc: dict, path: str, method: str, status: str) -> Draft202012Validator:
    content = doc["paths"][path][method]["responses"][status]["content"]
    schema = next(iter(content.values()))["schema"]
    return Draft202012Validator({**schema, "components": doc["components"]})


def test_a_staff_answer_matches_a_route_that_answers_staff_or_public_views():
    # The staff view is the public view with more fields, so a staff answer is valid under
    # both: the document must say anyOf (oneOf rejected every staff answer of GET reseller).
    doc = build_openapi()
    validator = _answer_schema(doc, "/api/resellers/{r}", "get", "200")
    reseller = Reseller(
        slug="demo",
        name="Demo s.r.o.",
        partner_center_tenant_id="3f2c6a1e-8d4b-4c1a-9b7e-2a5d0c9e4f10",
        mpn_id="6412345",
        country="CZ",
        currency="CZK",
        settings=ResellerSettings(appearance=Appearance(display_name="Demo")),
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        updated_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    who = {"reseller": "demo", "email": "x@demo.example", "kind": SignInKind.PLATFORM}
    staff = Principal(user_id="u", customer_id=None, role=Role.ACCOUNT_MANAGER, **who)
    customer = Principal(user_id="c", customer_id="c1", role=Role.CUSTOMER_ADMIN, **who)
    for viewer in (staff, customer):
        answer = json.loads(_json(resellers.present(viewer, reseller)))
        assert not list(validator.iter_errors(answer)), (viewer.role, answer)
    assert "defaultMarkupPercent" in json.loads(_json(resellers.present(staff, reseller)))


def test_route_template_constraints_are_dropped_in_openapi_paths():
    assert openapi_path("a/{id:guid}/b/{n?}") == "/api/a/{id}/b/{n}"


def test_function_names_are_unique_across_the_app():
    names = [f.get_function_name() for f in functions()]
    assert len(names) == len(set(names))


def test_log_lines_written_during_a_request_carry_its_request_id(caplog):
    from functions._http import REQUEST_ID

    token = REQUEST_ID.set("req-123")
    try:
        with caplog.at_level(logging.INFO):
            logging.getLogger("shared.anything").info("provisioning %s", "c1")
    finally:
        REQUEST_ID.reset(token)
    assert "[req-123] provisioning c1" in caplog.text


def test_report_routes_document_their_csv_and_xlsx_downloads_and_other_routes_do_not():
    paths = build_openapi()["paths"]
    for report in ("licences", "revenue", "usage"):
        content = paths[f"/api/resellers/{{r}}/reports/{report}"]["get"]["responses"]["200"][
            "content"
        ]
        assert {"application/json", "text/csv"} <= set(content)
        assert "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" in content
    renewals = paths["/api/resellers/{r}/renewals"]["get"]["responses"]["200"]["content"]
    assert set(renewals) == {"application/json"}

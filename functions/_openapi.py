"""The OpenAPI 3.1 document, generated from the registered routes and their models."""

from __future__ import annotations

import re
import types
import typing
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from functions._http import PROBLEM_JSON, ROUTES, RouteSpec
from shared.domain.exports import ExportFormat, ExportQuery

_PARAM = re.compile(r"\{([^}:?*]+)(?::[^}?]+)?\??\}")
_ERRORS = {
    400: "Invalid input (problem+json naming each field)",
    401: "Not signed in",
    403: "Not allowed for this role",
    404: "Not found (or outside the caller's world)",
    409: "Conflict with the current state",
    412: "The ETag in If-Match is stale",
    428: "If-Match is required",
    503: "A dependency is unavailable; retry later",
}


def openapi_path(route: str, prefix: str = "/api") -> str:
    """`resellers/{r}/customers/{c:guid}` → `/api/resellers/{r}/customers/{c}`."""
    return f"{prefix}/" + _PARAM.sub(lambda m: "{" + m.group(1) + "}", route)


def _models_of(response: Any) -> list[type[BaseModel]]:
    """The models a response declares: one, or each of a union (`XStaff | XPublic`)."""
    if isinstance(response, type) and issubclass(response, BaseModel):
        return [response]
    if typing.get_origin(response) in (typing.Union, types.UnionType):
        args = typing.get_args(response)
        if all(isinstance(a, type) and issubclass(a, BaseModel) for a in args):
            return list(args)
    return []


COMPONENT = "#/components/schemas/{model}"


def _schema_ref(model: Any, refs: dict[Any, Any], extra: dict[str, Any]) -> dict[str, Any]:
    models = _models_of(model)
    if len(models) == 1:
        ref: dict[str, Any] = refs[(models[0], "serialization")]
        return ref
    if models:
        # anyOf, not oneOf: the views of one resource nest (a staff view is a public view with
        # more fields), so a staff answer is valid under both and oneOf would reject it.
        return {"anyOf": [refs[(m, "serialization")] for m in models]}
    schema = TypeAdapter(model).json_schema(
        by_alias=True, mode="serialization", ref_template=COMPONENT
    )
    extra.update(schema.pop("$defs", {}))
    return schema


def _query_parameters(model: type[BaseModel], extra: dict[str, Any]) -> list[dict[str, Any]]:
    # Enums and nested types of a query model live in components, like every other schema.
    schema = model.model_json_schema(by_alias=True, ref_template=COMPONENT)
    extra.update(schema.pop("$defs", {}))
    required = set(schema.get("required", []))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "description": prop.get("description", ""),
            "schema": {k: v for k, v in prop.items() if k not in ("title", "description")},
        }
        for name, prop in schema.get("properties", {}).items()
    ]


def _operation(spec: RouteSpec, refs: dict[Any, Any], extra: dict[str, Any]) -> dict[str, Any]:
    params = [
        {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
        for p in _PARAM.findall(spec.route)
    ]
    if spec.query is not None:
        params += _query_parameters(spec.query, extra)
    op: dict[str, Any] = {
        "operationId": spec.name,
        "summary": spec.summary,
        "tags": list(spec.tags),
        "parameters": params,
        "responses": {},
    }
    if spec.access.host_checks_key:
        op["security"] = [{"functionKey": []}]
    elif spec.access.kind != "public":
        op["security"] = [{"bearer": []}]
    if spec.idempotent:
        op["parameters"].append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Repeat a create safely: the same key and body get the same answer.",
                "schema": {"type": "string", "maxLength": 255},
            }
        )
    if spec.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(spec.body, "validation")]}},
        }
    ok: dict[str, Any] = {"description": "Success"}
    if spec.response is not None:
        ok["content"] = {"application/json": {"schema": _schema_ref(spec.response, refs, extra)}}
    if spec.query is not None and issubclass(spec.query, ExportQuery):
        # A report also downloads as a file (`?format=` or Accept): its rows as CSV or XLSX.
        for fmt in (ExportFormat.CSV, ExportFormat.XLSX):
            ok.setdefault("content", {})[fmt.media_type] = {
                "schema": {"type": "string", "format": "binary"}
            }
    op["responses"][str(spec.status)] = ok
    problem = {"$ref": "#/components/schemas/Problem"}
    for status in sorted({400, 500, *spec.errors}):
        if status == 401 and spec.access.host_checks_key:
            # The host refuses a missing or wrong key itself, with an empty body.
            op["responses"]["401"] = {"description": "No valid function key"}
            continue
        op["responses"][str(status)] = {
            "description": _ERRORS.get(status, "Internal error"),
            "content": {PROBLEM_JSON: {"schema": problem}},
        }
    return op


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "requestId": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}


def build_openapi(
    title: str = "CSP reseller platform API", version: str = "0.1.0"
) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document for every route declared with `http(...)`."""
    models: list[tuple[type[BaseModel], Any]] = []
    for spec in ROUTES:
        if spec.body is not None:
            models.append((spec.body, "validation"))
        models.extend((m, "serialization") for m in _models_of(spec.response))
    refs, defs = models_json_schema(
        list(dict.fromkeys(models)), by_alias=True, ref_template=COMPONENT
    )
    extra: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for spec in ROUTES:
        item = paths.setdefault(openapi_path(spec.route), {})
        for method in spec.methods:
            item[method.lower()] = _operation(spec, refs, extra)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": {**extra, **defs.get("$defs", {}), "Problem": PROBLEM_SCHEMA},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "functionKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-functions-key",
                    "description": "A function key of the Function App (checked in Azure only).",
                },
            },
        },
    }

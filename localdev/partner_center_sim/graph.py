"""Microsoft Graph's partner billing reports on the simulator's host (see usage.py).

Graph takes tokens for its own audience (`https://graph.microsoft.com/.default`, application
permission PartnerBilling.Read.All); a Partner Center token gets 401 here. Errors come in Graph's
shape, `{"error": {"code", "message"}}`. Blobs are served under `/usageblobs/…` as Azure Storage
would, with the manifest's SAS token checked (expired or wrong → 403 AuthenticationFailed).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import date
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import render
from .auth import GRAPH_AUDIENCE, Principal
from .errors import SimError
from .usage import UsageExport, UsageExports, billing_period, invoice_period, period_totals

if TYPE_CHECKING:
    from .app import Simulator

GRAPH_ROOT = "/v1.0/reports/partners/billing"
BLOB_ROOT = "/usageblobs"
_ODATA = "#microsoft.graph.partners.billing."


def graph_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    """An error in Microsoft Graph's shape."""
    body = {"error": {"code": code, "message": message, "innerError": {}}}
    return Response(json.dumps(body), status, headers=headers, media_type="application/json")


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status, headers=headers, media_type="application/json")


class GraphBilling:
    """The usage export endpoints, the manifest, the blobs and the /_sim helpers for them."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.exports = UsageExports()

    def routes(self) -> list[Route]:
        """Routes to add to the simulator's application."""
        graph = self._graph
        root = GRAPH_ROOT
        return [
            Route(f"{root}/usage/unbilled/export", graph(self.export_unbilled), methods=["POST"]),
            Route(f"{root}/usage/billed/export", graph(self.export_billed), methods=["POST"]),
            Route(f"{root}/operations/{{operation_id}}", graph(self.get_operation)),
            Route(f"{root}/manifests/{{manifest_id}}", graph(self.get_manifest)),
            Route(f"{BLOB_ROOT}/{{path:path}}", self.get_blob),
            Route("/_sim/usage", self.sim_usage),
        ]

    def clear(self) -> None:
        """Forget every export (a reset)."""
        self.exports.clear()

    # ----------------------------------------------------------------- plumbing

    def _graph(
        self, handler: Callable[[Request, Principal, bytes], Response]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            body = await request.body()
            try:
                principal = self.sim.tokens.verify(
                    request.headers.get("authorization"), audiences=(GRAPH_AUDIENCE,)
                )
            except SimError as error:
                return graph_error(401, "InvalidAuthenticationToken", error.description)
            config = self.sim.state.config
            if config.rate_limit_per_minute > 0:
                retry_after = self.sim.limiter.hit(
                    f"graph:{principal.tenant_id}", config.rate_limit_per_minute
                )
                if retry_after is not None:
                    return graph_error(
                        429,
                        "TooManyRequests",
                        f"Too many requests. Try again in {retry_after} seconds.",
                        {"Retry-After": str(retry_after)},
                    )
            try:
                return handler(request, principal, body)
            except SimError as error:
                return graph_error(error.status, str(error.code), error.description)

        return endpoint

    def _location(self, request: Request, export: UsageExport) -> str:
        return f"{_base(request)}{GRAPH_ROOT}/operations/{export.id}"

    # ----------------------------------------------------------------- Graph

    def export_unbilled(self, request: Request, principal: Principal, body: bytes) -> Response:
        """POST …/usage/unbilled/export {currencyCode, billingPeriod, attributeSet} → 202."""
        data = _body(body)
        currency = data.get("currencyCode")
        which = str(data.get("billingPeriod") or "").lower()
        if not isinstance(currency, str) or len(currency.strip()) != 3:
            return graph_error(400, "BadRequest", "currencyCode is required (ISO 4217).")
        if which not in ("current", "last"):
            return graph_error(400, "BadRequest", "billingPeriod must be current or last.")
        full = _full(data)
        if full is None:
            return graph_error(400, "BadRequest", "attributeSet must be full or basic.")
        with self.sim.state.session() as now:
            export = self.exports.start(
                self.sim.state, now, billing_period(now, which), currency, full
            )
        return _json({}, 202, {"Location": self._location(request, export)})

    def export_billed(self, request: Request, principal: Principal, body: bytes) -> Response:
        """POST …/usage/billed/export {invoiceId, attributeSet} → 202 (invoices: SIM-YYYYMM)."""
        data = _body(body)
        invoice = data.get("invoiceId")
        if not isinstance(invoice, str) or not invoice.strip():
            return graph_error(400, "BadRequest", "invoiceId is required.")
        full = _full(data)
        if full is None:
            return graph_error(400, "BadRequest", "attributeSet must be full or basic.")
        with self.sim.state.session() as now:
            currency = self.sim.state.config.billing_currency
            export = self.exports.start(
                self.sim.state, now, invoice_period(invoice, now), currency, full
            )
        return _json({}, 202, {"Location": self._location(request, export)})

    def get_operation(self, request: Request, principal: Principal, body: bytes) -> Response:
        """GET …/operations/{id}: running, then succeeded (with the manifest) or failed."""
        with self.sim.state.session() as now:
            export = self.exports.poll(self.sim.state, request.path_params["operation_id"], now)
            if export is None:
                return graph_error(404, "NotFound", "The operation was not found.")
            payload: dict[str, Any] = {
                "@odata.context": f"{_base(request)}/v1.0/$metadata#reports/partners/billing/"
                "operations/$entity",
                "id": export.id,
                "createdDateTime": render.iso(export.created),
                "lastActionDateTime": render.iso(export.finished or now),
                "status": export.status,
            }
            headers: dict[str, str] | None = None
            if export.status == "running":
                payload["@odata.type"] = _ODATA + "runningOperation"
                headers = {"Retry-After": "1"}
            elif export.status == "failed":
                payload["@odata.type"] = _ODATA + "failedOperation"
                payload["error"] = export.error
            else:
                payload["@odata.type"] = _ODATA + "exportSuccessOperation"
                if self.sim.state.config.usage_manifest_inline:
                    payload["resourceLocation"] = self._manifest(request, export)
                else:
                    payload["resourceLocation@odata.navigationLink"] = (
                        f"{_base(request)}{GRAPH_ROOT}/manifests/{export.manifest_id}"
                    )
        return _json(payload, headers=headers)

    def get_manifest(self, request: Request, principal: Principal, body: bytes) -> Response:
        """GET …/manifests/{id}."""
        with self.sim.state.session():
            export = self.exports.by_manifest(request.path_params["manifest_id"])
            if export is None:
                return graph_error(404, "NotFound", "The manifest was not found.")
            return _json(self._manifest(request, export))

    def _manifest(self, request: Request, export: UsageExport) -> dict[str, Any]:
        assert export.period is not None
        tenant = self.sim.state.config.partner_tenant_id
        root = (
            f"{_base(request)}{BLOB_ROOT}/v1/PartnerTenantId={tenant}/BillingMonth="
            f"{export.period.month}/Export={export.id}/"
            f"Fragment={'full' if export.full else 'basic'}/PartitionType=default"
        )
        return {
            "@odata.type": _ODATA + "manifest",
            "id": export.manifest_id,
            "schemaVersion": "2",
            "dataFormat": "compressedJSONLines",
            "createdDateTime": render.iso(export.finished),
            "eTag": export.etag,
            "partnerTenantId": tenant,
            "rootDirectory": root,
            "sasToken": self.exports.sas_token(export),
            "partitionType": "default",
            "blobCount": len(export.blobs),
            "blobs": [{"name": name, "partitionValue": "default"} for name in export.blobs],
        }

    # ----------------------------------------------------------------- blob storage

    async def get_blob(self, request: Request) -> Response:
        """GET {rootDirectory}/{name}?{sasToken}: the gzip bytes, or Azure Storage's 403/404."""
        path = request.path_params["path"]
        export_id = next(
            (p.split("=", 1)[1] for p in path.split("/") if p.startswith("Export=")), ""
        )
        name = path.rsplit("/", 1)[-1]
        with self.sim.state.session() as now:
            export = self.exports.exports.get(export_id.lower())
            if export is None or name not in export.blobs:
                return _storage_error(404, "BlobNotFound", "The specified blob does not exist.")
            refused = self.exports.check_sas(
                export, request.query_params.get("se"), request.query_params.get("sig"), now
            )
            if refused is not None:
                return _storage_error(403, "AuthenticationFailed", refused)
            data = export.blobs[name]
        return Response(
            data,
            200,
            headers={"x-ms-blob-type": "BlockBlob"},
            media_type="application/octet-stream",
        )

    # ----------------------------------------------------------------- control API

    async def sim_usage(self, request: Request) -> Response:
        """GET /_sim/usage?period=current|last&currency=&through=YYYY-MM-DD: the period's totals
        computed straight from the generator (no export, no blobs)."""
        which = (request.query_params.get("period") or "current").lower()
        if which not in ("current", "last"):
            return graph_error(400, "BadRequest", "period must be current or last.")
        with self.sim.state.session() as now:
            currency = (
                request.query_params.get("currency") or self.sim.state.config.billing_currency
            ).upper()
            through = request.query_params.get("through")
            day = date.fromisoformat(through) if through else now.date()
            totals = period_totals(self.sim.state, billing_period(now, which), day, currency)
        return _json(totals)


def _base(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def _body(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _full(data: dict[str, Any]) -> bool | None:
    value = str(data.get("attributeSet") or "full").lower()
    return {"full": True, "basic": False}.get(value)


def _storage_error(status: int, code: str, message: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return Response(body, status, media_type="application/xml", headers={"x-ms-error-code": code})

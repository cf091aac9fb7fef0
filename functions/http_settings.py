"""A reseller's settings: sign-in methods, notification preferences, appearance."""

from __future__ import annotations

import azure.functions as func

from functions._http import Call, Reply, http
from shared.bootstrap import container
from shared.domain.identity import ResellerSettings
from shared.services import settings
from shared.services.access import Action, allow

bp = func.Blueprint()
TAGS = ("settings",)


@http(
    bp,
    "resellers/{r}/settings",
    ["GET"],
    name="http_get_settings",
    summary="The reseller's settings.",
    response=ResellerSettings,
    tags=TAGS,
    access=allow(Action.READ_SETTINGS),
)
def get_settings(call: Call) -> Reply:
    """The settings, with the reseller's ETag."""
    reseller = settings.get(container().resellers, call.route["r"])
    return Reply(reseller.settings, etag=reseller.etag)


@http(
    bp,
    "resellers/{r}/settings",
    ["PUT"],
    name="http_put_settings",
    summary="Replace the reseller's settings (If-Match required).",
    body=ResellerSettings,
    response=ResellerSettings,
    tags=TAGS,
    errors=(412, 428),
    access=allow(Action.MANAGE_SETTINGS),
)
def put_settings(call: Call) -> Reply:
    """Replace the settings as a whole."""
    c = container()
    etag = call.if_match()
    new = call.body(ResellerSettings)
    reseller = settings.replace(c.resellers, c.clock, call.route["r"], etag, new)
    return Reply(reseller.settings, etag=reseller.etag)

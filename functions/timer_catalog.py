"""Timer: the daily import of Microsoft's catalog and price sheet, per market."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.bootstrap import container
from shared.services import catalog_import

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("timer_import_catalog")
@bp.timer_trigger(arg_name="timer", schedule="%CATALOG_IMPORT_SCHEDULE%", run_on_startup=False)
def timer_import_catalog(timer: func.TimerRequest) -> None:
    """Refresh every configured market (CATALOG_MARKETS); a failed market does not stop the rest."""
    c = container()
    failed: list[str] = []
    for market in c.settings.catalog_markets:
        try:
            catalog_import.import_market(
                c.partner_center, c.products, c.market_stamps, c.clock, market
            )
        except Exception:
            log.exception("catalog import of %s failed", market)
            failed.append(market)
    if failed:
        # Failing the invocation makes the failure visible in monitoring; the next run retries.
        raise RuntimeError(f"catalog import failed for {', '.join(failed)}")

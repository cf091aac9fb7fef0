"""The ledger: facts written with the subscription records, projected into month aggregates."""

from shared.services.ledger.opening import open_months
from shared.services.ledger.projection import project
from shared.services.ledger.rebuild import Difference, rebuild
from shared.services.ledger.reconcile import reconcile
from shared.services.ledger.writing import LedgeredSubscriptions, backfill

__all__ = [
    "Difference",
    "LedgeredSubscriptions",
    "backfill",
    "open_months",
    "project",
    "rebuild",
    "reconcile",
]

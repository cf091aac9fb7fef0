"""Sync: each reseller's customers, subscriptions and licences mirrored from Partner Center.

`runs` starts a run (and ends it); `handle` runs a `sync-reseller` message (the customer
phase, or one chunk); `give_up` records one that failed for good; `start_nightly` is the
timer's; `StaleRuns` is the watchdog's view of runs.
"""

from shared.services.sync.book import NoCalls, SyncBook, SyncPolicy, no_meter
from shared.services.sync.finish import give_up
from shared.services.sync.nightly import start_nightly
from shared.services.sync.steps import handle
from shared.services.sync.watch import StaleRuns

__all__ = [
    "NoCalls",
    "StaleRuns",
    "SyncBook",
    "SyncPolicy",
    "give_up",
    "handle",
    "no_meter",
    "start_nightly",
]

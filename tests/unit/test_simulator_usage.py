"""The simulator's generated Azure usage: deterministic, per Azure plan, by calendar month."""

from __future__ import annotations

import gzip
import json
import pickle
from dataclasses import fields
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from localdev.partner_center_sim.catalog import Catalog
from localdev.partner_center_sim.clock import SimClock
from localdev.partner_center_sim.state import AZURE_PLAN_PRODUCT_ID, SimConfig, SimState
from localdev.partner_center_sim.usage import (
    FULL_ONLY,
    UsageExports,
    billing_period,
    json_line,
    period_lines,
)


@pytest.fixture
def state() -> SimState:
    sim = SimState(Catalog(), SimClock())
    with sim.session() as now:
        sim.seed(6, None, 3, 11, now)
    return sim


def azure_plans(state: SimState) -> list[str]:
    return [s.id for s in state.subscriptions.values() if s.product_id == AZURE_PLAN_PRODUCT_ID]


def test_billing_periods_are_calendar_months_across_a_year_end() -> None:
    january = datetime(2027, 1, 15, 9, tzinfo=UTC)

    assert billing_period(january, "current").first == date(2027, 1, 1)
    assert billing_period(january, "last").first == date(2026, 12, 1)
    assert billing_period(january, "last").last == date(2026, 12, 31)


def test_the_same_day_always_gives_the_same_lines(state: SimState) -> None:
    assert azure_plans(state)
    now = state.clock.now()
    period = billing_period(now, "last")

    first = list(period_lines(state, period, now.date(), "EUR"))
    again = list(period_lines(state, period, now.date(), "EUR"))

    assert first == again
    assert {line["SubscriptionId"] for line in first} <= set(azure_plans(state))


def test_usage_runs_from_the_subscription_start_to_the_day_asked(state: SimState) -> None:
    now = state.clock.now()
    period = billing_period(now, "current")
    through = period.first + timedelta(days=2)

    lines = list(period_lines(state, period, through, "EUR"))

    days = {line["UsageDate"][:10] for line in lines}
    assert max(days) <= through.isoformat()
    for line in lines:
        sub = state.subscriptions[line["SubscriptionId"]]
        assert line["UsageDate"][:10] >= sub.effective_start.date().isoformat()


def test_the_basic_attribute_set_leaves_out_meters_and_resource_groups(state: SimState) -> None:
    now = state.clock.now()
    line = next(period_lines(state, billing_period(now, "last"), now.date(), "EUR"))

    basic = json.loads(json_line(line, full=False))
    full = json.loads(json_line(line, full=True))

    assert "MeterCategory" in full and "ResourceGroup" in full
    assert not FULL_ONLY & basic.keys()
    assert basic["BillingPreTaxTotal"] == full["BillingPreTaxTotal"]


def test_an_export_finishes_after_its_polls_and_its_sas_expires(state: SimState) -> None:
    state.config.usage_export_polls = 2
    state.config.usage_sas_minutes = 10
    exports = UsageExports()
    now = state.clock.now()
    export = exports.start(state, now, billing_period(now, "last"), "EUR", True)

    statuses = [exports.poll(state, export.id, now).status for _ in range(3)]  # type: ignore[union-attr]
    sas = dict(part.split("=", 1) for part in exports.sas_token(export).split("&"))
    expiry = sas["se"].replace("%3A", ":")

    assert statuses == ["running", "running", "succeeded"]
    lines = b"".join(gzip.decompress(b) for b in export.blobs.values()).splitlines()
    assert len(lines) == sum(1 for _ in period_lines(state, export.period, now.date(), "EUR"))  # type: ignore[arg-type]
    assert exports.check_sas(export, expiry, sas["sig"], now) is None
    assert exports.check_sas(export, expiry, "forged", now) is not None
    assert exports.check_sas(export, expiry, sas["sig"], now + timedelta(minutes=11)) is not None


def _config_as_older_code_pickled_it(values: dict[str, Any]) -> SimConfig:
    config = SimConfig.__new__(SimConfig)
    for name, value in values.items():
        object.__setattr__(config, name, value)
    return config


class _OlderConfig:
    """Pickles like a SimConfig of the code before the usage knobs (their slots unset)."""

    def __init__(self, config: SimConfig) -> None:
        self.values = {
            f.name: getattr(config, f.name)
            for f in fields(SimConfig)
            if not f.name.startswith("usage_")
        }

    def __reduce__(self) -> tuple[Any, ...]:
        return (_config_as_older_code_pickled_it, (self.values,))


def test_a_snapshot_from_before_the_usage_knobs_loads_with_their_defaults(tmp_path: Path) -> None:
    saved = SimState(Catalog(), SimClock(), SimConfig(rate_limit_per_minute=7), tmp_path)
    saved.touch()
    saved.save(force=True)
    snapshot = next(tmp_path.iterdir())
    data = pickle.loads(snapshot.read_bytes())
    data["config"] = _OlderConfig(data["config"])
    snapshot.write_bytes(pickle.dumps(data))

    loaded = SimState(Catalog(), SimClock(), None, tmp_path)

    assert loaded.load()
    assert loaded.config.rate_limit_per_minute == 7
    assert loaded.config.usage_export_polls == 1
    assert loaded.config.usage_lines_per_blob == 1000

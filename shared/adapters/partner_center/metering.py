"""The call meter the transport counts into; it lives in `shared.domain.metering`.

Services and triggers may not import adapters (tests/unit/test_import_rules.py), so the meter
itself is a stdlib-only domain module they can use; this name stays for the adapter's side.
"""

from shared.domain.metering import CallMeter, carry_meter, count, current_meter, metered

__all__ = ["CallMeter", "carry_meter", "count", "current_meter", "metered"]

"""A stateful Partner Center simulator over HTTPS for local runs and tests.

Start it with ``python -m localdev.partner_center_sim --port 0 --state-dir DIR`` or, from Python,
``start_simulator(DIR)``; either way it writes ``DIR/connection.json`` once it listens.
"""

from .launcher import SimulatorHandle, start_simulator

__all__ = ["SimulatorHandle", "start_simulator"]

"""Simulated devices in one process that speak the real protocol over real MQTT.

For breadth in rollout tests and for load: every payload is an :mod:`agent.contracts` message,
every update walks the agent's own transition table, and one network thread drives every
device's MQTT client, so a device costs a client and a socket rather than a process or a thread.

- :mod:`edgectl.simulate.simulator`: :class:`Simulator` (start, stop, fault knobs, views) and
  :class:`SimConfig`.
- :mod:`edgectl.simulate.faults`: :class:`Faults` and which devices show them (pure).
- :mod:`edgectl.simulate.update`: an update's report sequence (pure).
- :mod:`edgectl.simulate.telemetry`: a window's figures (pure).
- :mod:`edgectl.simulate.registrar`: the seam through which a device joins the fleet.
- :mod:`edgectl.simulate.device`, :mod:`edgectl.simulate.netloop`: one device, and the loop.
"""

from edgectl.simulate.faults import FAIL_AT, Faults
from edgectl.simulate.registrar import Credentials, Registrar, RegistrationFailed, RestRegistrar
from edgectl.simulate.simulator import SimConfig, Simulator, SimulatorError, device_ids

__all__ = [
    "FAIL_AT",
    "Credentials",
    "Faults",
    "Registrar",
    "RegistrationFailed",
    "RestRegistrar",
    "SimConfig",
    "Simulator",
    "SimulatorError",
    "device_ids",
]

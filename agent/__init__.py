"""The EdgeFleet device agent (``edge-agent``).

Installed on devices with ``pip install edgefleet[agent]``. It must never import ``compilers`` or
``fleet_server``: a device carries only this package, ``agent.contracts`` and ``device_profiles``.
"""

__version__ = "0.1.0"

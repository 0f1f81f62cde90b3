"""The EdgeFleet device agent (``edge-agent``).

Installed on devices with ``pip install edgefleet[agent]``. It must never import ``compilers`` or
``fleet_server``: a device carries only this package, ``agent.contracts`` and ``device_profiles``.

- :mod:`agent.cli` / :mod:`agent.config`: the command line and its settings.
- :mod:`agent.daemon`: wires everything and stops cleanly.
- :mod:`agent.update`: the update state machine (pure), journal, downloads, A/B slots, the
  reconciler that drives an update, and the worker thread that feeds it.
- :mod:`agent.serving`: the Open Inference Protocol v2 API over the loaded model.
- :mod:`agent.mqtt_client`, :mod:`agent.registration`, :mod:`agent.identity`: the links to the broker
  and fleet server, and the device's key and certificate.
- :mod:`agent.errors`: the error tree (reject / retry / report).
- :mod:`agent.contracts`, :mod:`agent.runtimes`: wire contracts and runtime adapters.
"""

__version__ = "0.1.0"

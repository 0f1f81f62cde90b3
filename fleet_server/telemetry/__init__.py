"""Fleet telemetry on the server: ingest, storage with retention and downsampling, queries.

- :class:`TelemetryIngest`: takes validated messages from the MQTT bridge, stores them in batches.
- :func:`roll_up` / :func:`prune` and :class:`TelemetryJobs`: one-minute rollups and retention.
- :func:`model_figures` / :func:`rollup_figures` → :class:`ModelFigures`: what the gates read.
- :class:`TelemetryCollector`: per-model gauges for ``/metrics``.

The message is :class:`agent.contracts.Telemetry`; the tables are
:class:`~fleet_server.db.TelemetryRow`, :class:`~fleet_server.db.TelemetryRollup`.
"""

from fleet_server.telemetry.figures import ModelFigures, figures_since, model_figures, rollup_figures
from fleet_server.telemetry.ingest import TelemetryIngest
from fleet_server.telemetry.jobs import TelemetryJobs
from fleet_server.telemetry.rollup import prune, roll_up

__all__ = [
    "ModelFigures",
    "TelemetryIngest",
    "TelemetryJobs",
    "figures_since",
    "model_figures",
    "prune",
    "roll_up",
    "rollup_figures",
]

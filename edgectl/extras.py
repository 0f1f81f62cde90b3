"""Lazy imports of EdgeFleet's heavy parts, with an install hint when an optional extra is missing.

``compilers`` pulls in onnx and onnxruntime, so commands import it inside their body under
:func:`needs_extra`; ``edgectl --help`` and the server commands never load it.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from edgectl.app import Application

# A ModuleNotFoundError for one of these is a bug in EdgeFleet, not a missing extra.
OWN_PACKAGES = frozenset({"edgectl", "compilers", "device_profiles", "agent", "fleet_server"})


@contextmanager
def needs_extra(app: Application, extra: str) -> Iterator[None]:
    """Turn a missing third-party module into ``app.abort`` with ``pip install 'edgefleet[extra]'``."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] in OWN_PACKAGES:
            raise
        hint = f"pip install 'edgefleet[{extra}]'"
        app.abort(f"this command needs the {extra} extra ({exc.name} is not installed): {hint}")

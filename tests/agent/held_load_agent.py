"""``python -m tests.agent.held_load_agent ARGS``: the real agent, except that loading a bundle
whose manifest version is written in the file ``$EDGEFLEET_TEST_HOLD_LOAD`` waits while that file
exists (after touching ``<file>.reached``), so a test can ``kill -9`` it while LOADING, as a power
cut during a long TensorRT engine build would."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import agent.runtimes.registry as registry

_real_load = registry.load_bundle
HOLD = Path(os.environ["EDGEFLEET_TEST_HOLD_LOAD"])


def held_load(bundle_dir: Path, manifest: Any, **kwargs: Any) -> Any:
    if HOLD.is_file() and HOLD.read_text().strip() == manifest.version:
        HOLD.with_name(HOLD.name + ".reached").touch()
        while HOLD.exists():
            time.sleep(0.05)
    return _real_load(bundle_dir, manifest, **kwargs)


# Before the reconciler is imported: it binds load_bundle as its default loader.
registry.load_bundle = held_load

if __name__ == "__main__":
    from agent.cli import run

    run()

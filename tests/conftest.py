"""Shared pytest plugins: real services for tests (Mosquitto, PostgreSQL, S3 via moto)."""

import sys
from pathlib import Path

# The fixtures are imported as ``tests.fixtures.*`` whatever the import mode and the directory
# pytest is started from.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

pytest_plugins = ["tests.fixtures.mosquitto", "tests.fixtures.postgres", "tests.fixtures.s3"]

"""``python -m agent`` is ``edge-agent``."""

from agent.cli import run

run()

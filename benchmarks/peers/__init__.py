"""Peer inference servers for ``serving_bench.py``: each in a venv of its own under
``~/.cache/edgefleet/peers/<name>`` (their pins clash with ours and with each other)."""

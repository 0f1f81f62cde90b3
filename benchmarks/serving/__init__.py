"""Pieces of ``benchmarks/serving_bench.py``: the load loop, our own light clients (raw HTTP/1.1
keep-alive and gRPC), request bodies, the servers under test, machine facts and the report."""

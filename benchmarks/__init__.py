"""Throughput, latency and memory harness (not timed tests): `python -m benchmarks`."""

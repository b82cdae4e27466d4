"""Benchmarks, run as scripts (``python -m tests.bench.bench_<name>``); pytest does not collect them."""

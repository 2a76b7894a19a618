"""Throughput benchmarks (never run as timed tests). See ``python -m benchmarks.throughput --help``."""

"""Benchmarks of gapsweep; run them as modules, e.g. `python -m benchmarks.gap_metrics`."""

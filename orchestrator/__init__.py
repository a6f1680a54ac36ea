"""gapsweep's orchestrator: sweep specs, Ray Tune execution, tracking and the CLI."""

"""Benchmarks: the proxy's cost per event against the floor (`python -m tests.benchmarks.run`)."""

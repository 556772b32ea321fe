"""Benchmarks: peersockets side by side with the JavaScript hyperdrive stack (see README.md)."""
